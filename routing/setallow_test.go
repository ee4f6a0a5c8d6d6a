package routing

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// The allow-list swaps whole on reload: a target newly allowed works, one
// removed is refused for the next request, and a bad list changes nothing.
func TestSetAllowSwapsPathRoutes(t *testing.T) {
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/24"}})
	classify := func(uri string) error {
		_, err := r.Classify([]byte(uri))
		return err
	}
	if err := classify("/vnc/10.0.0.5"); err != nil {
		t.Fatalf("before: %v", err)
	}
	if err := classify("/vnc/10.0.1.5"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("before, outside: %v, want forbidden", err)
	}

	if err := r.SetAllow([]string{"10.0.1.0/24:5900-5901"}); err != nil {
		t.Fatal(err)
	}
	if err := classify("/vnc/10.0.1.5:5900"); err != nil {
		t.Errorf("newly allowed: %v", err)
	}
	if err := classify("/vnc/10.0.0.5"); !errors.Is(err, ErrForbidden) {
		t.Errorf("removed: %v, want forbidden", err)
	}
	if got := r.AllowList().Len(); got != 1 {
		t.Errorf("AllowList().Len() = %d, want 1", got)
	}

	err := r.SetAllow([]string{"10.0.2.0/24", "10.0.3.1/8"})
	if err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Fatalf("bad list: %v, want the host-bits error", err)
	}
	if err := classify("/vnc/10.0.1.5:5900"); err != nil {
		t.Errorf("after a bad list, the previous one must stay: %v", err)
	}
	if err := classify("/vnc/10.0.2.5"); !errors.Is(err, ErrForbidden) {
		t.Errorf("after a bad list, none of it may apply: %v", err)
	}

	// Emptied: path routes reach nothing again.
	if err := r.SetAllow(nil); err != nil {
		t.Fatal(err)
	}
	if err := classify("/vnc/10.0.1.5:5900"); !errors.Is(err, ErrForbidden) {
		t.Errorf("empty list: %v, want forbidden", err)
	}
}

// Token targets follow the list in force when they are resolved (CONTRACT.md:
// once any --allow is given, token targets must lie inside it).
func TestSetAllowAppliesToTokenTargets(t *testing.T) {
	src := &fastSource{mapSource{name: "file", m: map[string]string{"vm1": "10.9.0.1:5901"}}}
	r := newRouter(t, Config{Sources: []TokenSource{src}})
	resolve := func() error {
		rt, err := r.Classify([]byte("/websockify?token=vm1"))
		if err != nil {
			return err
		}
		_, err = r.ResolveFast(rt)
		return err
	}
	if err := resolve(); err != nil {
		t.Fatalf("no --allow: token targets are not limited by network: %v", err)
	}
	if err := r.SetAllow([]string{"192.168.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if err := resolve(); !errors.Is(err, ErrForbidden) {
		t.Errorf("outside the new list: %v, want forbidden", err)
	}
	if err := r.SetAllow([]string{"10.9.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if err := resolve(); err != nil {
		t.Errorf("inside the new list: %v", err)
	}
}

// Lookups on the event loops read the list while a reload swaps it: the race
// detector must see no conflict, and every answer must come from one list or
// the other, never a mix.
func TestSetAllowConcurrent(t *testing.T) {
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/24"}})
	lists := [][]string{{"10.0.0.0/24"}, {"10.0.1.0/24"}}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := r.AllowList()
				in0 := a.Check(netip.MustParseAddrPort("10.0.0.1:5901")) == nil
				in1 := a.Check(netip.MustParseAddrPort("10.0.1.1:5901")) == nil
				if in0 == in1 {
					t.Errorf("one snapshot allowed both or neither (%v, %v)", in0, in1)
					return
				}
				_, _ = r.Classify([]byte("/vnc/10.0.0.1"))
			}
		})
	}
	for i := range 2000 {
		if err := r.SetAllow(lists[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// Reading the swappable list costs a lookup no allocation: one atomic load
// and a copy of the list's header.
func TestAllowListLoadAllocates(t *testing.T) {
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/24"}})
	ap := netip.MustParseAddrPort("10.0.0.7:5901")
	if n := testing.AllocsPerRun(500, func() { _ = r.AllowList().Check(ap) }); n != 0 {
		t.Errorf("loading and checking the allow-list allocates %.1f times, want 0", n)
	}
}

package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"vncedge/bench/promtext"
)

// fakeAdmin serves a /metrics page whose CPU and lookup counts grow with every scrape.
func fakeAdmin(t *testing.T, withLookups bool) *httptest.Server {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		k := n.Add(1)
		fmt.Fprintf(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %d.5\n", k)
		fmt.Fprintf(w, "process_resident_memory_bytes %d\nprocess_open_fds %d\nprocess_max_fds 20000\n", 10<<20+k<<20, 10+k)
		if withLookups {
			fmt.Fprintf(w, "%s_bucket{source=\"redis\",le=\"0.001\"} %d\n", LookupFamily, 10*k)
			fmt.Fprintf(w, "%s_bucket{source=\"redis\",le=\"0.01\"} %d\n", LookupFamily, 20*k)
			fmt.Fprintf(w, "%s_bucket{source=\"redis\",le=\"+Inf\"} %d\n", LookupFamily, 20*k)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A proxy on another host is sampled through its /metrics: CPU, memory, descriptors, and
// the token lookups of a {token} URL (Direct ignores the URL: the sessions go to the VMs).
func TestRemoteSampling(t *testing.T) {
	srv := fakeAdmin(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Scenario: "sessions", Kind: KindHold, Sessions: 4, Layout: Layout{Port: freePort(t)},
		Target: Target{Name: "remote", Direct: true, AdminURL: srv.URL, URL: "ws://127.0.0.1:1/websockify?token={token}"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := r.Proxy
	if p == nil || p.Before.CPUSeconds != 1.5 || p.Before.RSSKiB != 11<<10 || p.Before.FDLimit != 20000 || p.Opened.CPUSeconds <= p.Before.CPUSeconds {
		t.Fatalf("remote samples %+v", p)
	}
	// Before and Opened are scrapes 1 and 3 (the lookup watch is scrape 2, then 4): the
	// CPU per setup is their difference over the 4 setups.
	if p.SetupCPUMicros <= 0 {
		t.Fatalf("setup CPU %v", p.SetupCPUMicros)
	}
	if len(r.Lookups) != 1 || r.Lookups[0].Source != "redis" || r.Lookups[0].Count <= 0 {
		t.Fatalf("lookups %+v (notes %v)", r.Lookups, r.Notes)
	}
}

func TestLookupsBetween(t *testing.T) {
	before, _ := promtext.Parse([]byte(LookupFamily + "_bucket{source=\"http\",le=\"0.002\"} 5\n" + LookupFamily + "_bucket{source=\"http\",le=\"+Inf\"} 5\n"))
	after, _ := promtext.Parse([]byte(LookupFamily + "_bucket{source=\"http\",le=\"0.002\"} 105\n" + LookupFamily + "_bucket{source=\"http\",le=\"+Inf\"} 105\n"))
	ls, note := LookupsBetween(before, after)
	if note != "" || len(ls) != 1 || ls[0].Count != 100 || ls[0].P99Ms <= 0 || ls[0].P99Ms > 2 {
		t.Fatalf("lookups %+v %q", ls, note)
	}
	if _, note := LookupsBetween(nil, nil); note == "" {
		t.Fatal("no note for a proxy without the histogram")
	}
	if _, note := LookupsBetween(after, after); note == "" {
		t.Fatal("no note when nothing was looked up")
	}
	if _, err := SampleFromMetrics(before); err == nil {
		t.Fatal("a page without process_cpu_seconds_total sampled")
	}
}

package engine

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unsafe"
)

// TestTransitions pins the shape of the state machine drawn in session.go.
func TestTransitions(t *testing.T) {
	for st := range numStates {
		if st != stClosed && !transitions[st].has(stClosed) {
			t.Errorf("%v cannot reach closed: a browser may vanish in any state", st)
		}
		if transitions[st].has(st) {
			t.Errorf("%v -> %v: a transition must change the state", st, st)
		}
	}
	if transitions[stClosed] != 0 {
		t.Error("closed must be terminal")
	}
	if transitions[stResolving].has(stRelaying) || transitions[stResolving].has(stClosing) {
		t.Error("resolving may not send the 101: a failed lookup is an HTTP error")
	}
	if !transitions[stDialing].has(stClosing) {
		t.Error("a failed dial needs its own path to closing (101, then 1011)")
	}
}

// TestIllegalTransition: under go test a wrong step panics; in production
// it is counted, logged, and the session is closed, never left half-done.
func TestIllegalTransition(t *testing.T) {
	s, _, _ := benchSession(t, modeBinary)
	if !s.srv.strict {
		t.Fatal("strict must be on under go test")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("relaying -> dialing did not panic under go test")
			}
		}()
		s.to(stDialing)
	}()

	s, _, _ = benchSession(t, modeBinary)
	s.srv.strict = false
	s.ls.sessions.add(s)
	s.srv.met.connectionsOpen.Inc()
	closed := &closeCounter{fakeConn: s.browser.c.(*fakeConn)}
	s.browser.c = closed
	if s.to(stDialing) {
		t.Fatal("illegal transition reported success")
	}
	if s.state != stRelaying {
		t.Fatalf("state %v after a refused step, want it unchanged", s.state)
	}
	if closed.n != 1 {
		t.Fatalf("browser socket closed %d times, want 1", closed.n)
	}
	if n := s.srv.met.panics.Get(); n != 1 {
		t.Fatalf("vncedge_panics_total = %d, want 1", n)
	}
}

type closeCounter struct {
	*fakeConn
	n int
}

func (c *closeCounter) Close() error { c.n++; return nil }

// TestEveryStateHasADeadline: nothing waits forever. Relaying's timers are
// its idle, ping and park checks; every other live state has a deadline.
func TestEveryStateHasADeadline(t *testing.T) {
	s, _, _ := benchSession(t, modeBinary)
	s.browser.closeBy = 1
	for _, st := range []state{stResolving, stDialing, stClosing} {
		s.state = st
		at, expire := s.deadline()
		if at <= 0 || expire == nil {
			t.Errorf("state %v has no deadline", st)
		}
	}
}

// TestOnlySessionGoAssignsState keeps the promise of session.go's doc: the
// session state changes in one place, through to.
func TestOnlySessionGoAssignsState(t *testing.T) {
	assign := regexp.MustCompile(`\bs\.state\s*=[^=]`)
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if f == "session.go" || strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if loc := assign.FindIndex(b); loc != nil {
			line := 1 + strings.Count(string(b[:loc[0]]), "\n")
			t.Errorf("%s:%d assigns the session state; use session.to", f, line)
		}
	}
}

// TestSessionSize keeps an idle session in the 576-byte size class: every
// byte of it is multiplied by ten thousand sessions per box (issue 14's
// target is 1.5 KiB per idle session in all, gnet's two sockets included).
// Fields only the setup needs go in sessionSetup, rare ones behind pointers.
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 576 {
		t.Fatalf("session is %d bytes, over the 576-byte size class", n)
	}
}

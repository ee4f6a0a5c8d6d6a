package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// flowStep, flow and flowResult mirror driver.mjs's flows (its header says what each step
// does): sessions that need several pages at once, or the test's hand between two steps.
type flowStep struct {
	ID          string      `json:"id,omitempty"`
	Do          string      `json:"do"`
	Page        string      `json:"page,omitempty"`
	URL         string      `json:"url,omitempty"`
	App         string      `json:"app,omitempty"`
	WaitColour  *waitColour `json:"waitColour,omitempty"`
	MinDistinct int         `json:"minDistinct,omitempty"`
	Samples     [][2]int    `json:"samples,omitempty"`
	Hash        bool        `json:"hash,omitempty"`
	StableMs    int         `json:"stableMs,omitempty"`
	ChangedFrom string      `json:"changedFrom,omitempty"`
	Keys        string      `json:"keys,omitempty"`
	Clicks      int         `json:"clicks,omitempty"`
	Forbid      string      `json:"forbid,omitempty"`
	File        string      `json:"file,omitempty"`
	DelayMs     int         `json:"delayMs,omitempty"`
}

type flow struct {
	Name      string     `json:"name"`
	TimeoutMs int        `json:"timeoutMs"`
	Steps     []flowStep `json:"steps"`
}

type stepResult struct {
	ID   string `json:"id"`
	Do   string `json:"do"`
	Page string `json:"page"`
	pageState
	LoadError string `json:"loadError"`
	Canvas    struct {
		W int `json:"w"`
		H int `json:"h"`
	} `json:"canvas"`
	Samples    [][4]int `json:"samples"`
	Distinct   int      `json:"distinct"`
	Hash       string   `json:"hash"`
	Settled    bool     `json:"settled"`
	Body       string   `json:"body"`
	Found      []string `json:"found"`
	Screenshot string   `json:"screenshot"`
	Error      string   `json:"error"`
	Ms         int      `json:"ms"`
}

// describe is the step's line in the summary: what it saw.
func (s *stepResult) describe() string {
	var d string
	switch s.Do {
	case "open", "state":
		d = fmt.Sprintf("%s %q", s.State, s.Status)
		if s.LoadError != "" {
			d = "load error: " + s.LoadError
		}
	case "pixels":
		d = fmt.Sprintf("settled %v, %dx%d, %d colours", s.Settled, s.Canvas.W, s.Canvas.H, s.Distinct)
		if s.Hash != "" {
			d += ", sha256 " + s.Hash[:16]
		}
		if s.State != "" {
			d += fmt.Sprintf(", session %s %q", s.State, s.Status)
		}
	case "hook":
		d = s.Body
	case "secrets":
		d = fmt.Sprintf("found %v", s.Found)
	case "screenshot":
		d = s.Screenshot
	}
	if s.Error != "" {
		d += " ERROR " + s.Error
	}
	return d
}

type pageInfo struct {
	URL        string   `json:"url"`
	WebSockets int      `json:"websockets"`
	WSURLs     []string `json:"wsURLs"`
	Recv       []string `json:"recv"`
	Sent       []string `json:"sent"`
}

type flowResult struct {
	Name    string               `json:"name"`
	Steps   []stepResult         `json:"steps"`
	Pages   map[string]*pageInfo `json:"pages"`
	Error   string               `json:"error"`
	Console []string             `json:"console"`
}

// step returns the result of the step with this id, or an empty one that fails every check
// (the flow stopped before it).
func (r *flowResult) step(id string) *stepResult {
	for i := range r.Steps {
		if r.Steps[i].ID == id {
			return &r.Steps[i]
		}
	}
	return &stepResult{ID: id, Error: "the step did not run"}
}

func (r *flowResult) page(name string) *pageInfo {
	if p := r.Pages[name]; p != nil {
		return p
	}
	return &pageInfo{}
}

// frames joins a page's first WebSocket frames (each cut at 256 bytes by the driver; the
// handshake's are far shorter).
func frames(hexFrames []string) []byte {
	var b []byte
	for _, h := range hexFrames {
		d, _ := hex.DecodeString(h)
		b = append(b, d...)
	}
	return b
}

// hookSet is the Go side of the driver's hook steps: GET /NAME runs the named function, one
// at a time, and answers its text (500 with the error when it fails).
type hookSet struct {
	mu  sync.Mutex
	fns map[string]func() (string, error)
	srv *httptest.Server
}

func newHookSet(t *testing.T) *hookSet {
	h := &hookSet{fns: map[string]func() (string, error){}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		name := strings.TrimPrefix(r.URL.Path, "/")
		fn, ok := h.fns[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		body, err := fn()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookSet) add(name string, fn func() (string, error)) flowStep {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fns[name] = fn
	return flowStep{ID: "hook-" + name, Do: "hook", URL: h.srv.URL + "/" + name}
}

// runFlows runs the flows in one headless Chromium (driver.mjs) and returns their results by
// name. extraArgs go to Chromium's command line.
func runFlows(t *testing.T, node, chromium, tmp, art string, extraArgs []string, flows []flow) map[string]*flowResult {
	t.Helper()
	plan := map[string]any{
		"chromium":     chromium,
		"userDataDir":  filepath.Join(tmp, "chromium-profile"),
		"artifacts":    art,
		"chromiumArgs": extraArgs,
		"flows":        flows,
	}
	planFile := filepath.Join(tmp, "plan.json")
	pb, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(planFile, pb, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runNode(t, node, filepath.Join(repoRoot(t), "e2e"), 150*time.Second, "driver.mjs", planFile)
	results := map[string]*flowResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		var r flowResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("driver output %q: %v", sc.Text(), err)
		}
		results[r.Name] = &r
	}
	return results
}

// summary writes the flow's steps, one line each, as the summary file shows them.
func (r *flowResult) summary(w *strings.Builder) {
	for _, s := range r.Steps {
		fmt.Fprintf(w, "%-20s %-7s %-10s %-24s %5d ms  %s\n", r.Name, s.Page, s.Do, s.ID, s.Ms, s.describe())
	}
	if r.Error != "" {
		fmt.Fprintf(w, "%-20s stopped: %s\n", r.Name, strings.SplitN(r.Error, "\n", 2)[0])
	}
}

// failf reports a failed check of the flow with its pages' console lines.
func (r *flowResult) failf(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Errorf(format+"\n  console:\n  %s", append(args, strings.Join(r.Console, "\n  "))...)
}

// connected checks that a step (open or state) found its session connected.
func (r *flowResult) connected(t *testing.T, id string) {
	t.Helper()
	if s := r.step(id); s.State != "connected" {
		r.failf(t, "%s: state %q (status %q, load error %q, step error %q), want connected", id, s.State, s.Status, s.LoadError, s.Error)
	}
}

// pixels checks that a pixels step settled on a w x h canvas showing want at the samples.
func (r *flowResult) pixels(t *testing.T, id string, w, h int, samples [][2]int, want [][3]int) {
	t.Helper()
	s := r.step(id)
	if !s.Settled || s.Canvas.W != w || s.Canvas.H != h || len(s.Samples) != len(want) {
		r.failf(t, "%s: canvas %dx%d settled %v with %d samples (session %q %q, step error %q), want %dx%d showing the pattern",
			id, s.Canvas.W, s.Canvas.H, s.Settled, len(s.Samples), s.State, s.Status, s.Error, w, h)
		return
	}
	for i := range want {
		if !near(s.Samples[i], want[i], 8) {
			r.failf(t, "%s: pixel %v = %v, want %v", id, samples[i], s.Samples[i], want[i])
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"vncedge/bench/crelay"
	"vncedge/bench/load"
	"vncedge/bench/strace"
)

// common holds the flags every scenario shares.
type common struct {
	url, name       string
	pid             int
	adminURL        string
	direct          bool
	vs, vsName      string
	vsPid           int
	vsAdminURL      string
	vsMayFail       bool
	cRelay          string
	cRelaySplice    string
	cRelayThreads   int
	jsonOut         bool
	out             string
	tokenFile       string
	timeout         time.Duration
	perWorker       int
	perVM           int
	vmPort          int
	vmListen        string
	insecure        bool
	caFile          string
	tlsServerName   string
	inProcess       bool
	settle          time.Duration
	progressEvery   time.Duration
	layout          load.Layout
	relay           *crelay.Relay
	relayTargetName string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "proxy URL `template`: {ip} {port} {token} are filled per session\n(ws://127.0.0.1:6080/vnc/{ip}, ws://127.0.0.1:6080/websockify?token={token}, wss://edge.example:443/vnc/{ip}:{port})")
	fs.StringVar(&c.name, "name", "vncedge", "label of the --url target")
	fs.IntVar(&c.pid, "pid", 0, "`PID` of the --url proxy on this machine: sample its memory, descriptors and CPU from /proc")
	fs.StringVar(&c.adminURL, "admin-url", "", "the --url proxy's admin listener (`http://HOST:PORT`): token lookup figures from its /metrics,\nand its CPU, memory and descriptors when it runs on another host (no --pid); BENCH_ADMIN_TOKEN is sent as a bearer token")
	fs.BoolVar(&c.direct, "direct", false, "also run the baseline: clients talk WebSocket to the VMs themselves, no proxy")
	fs.StringVar(&c.cRelay, "c-relay", "", "also run the C-relay baseline: \"haproxy\" starts HAProxy (TCP mode, splice where built in)\nin front of the VMs' own WebSocket, one hop and no framing work (loopback VMs only)")
	fs.StringVar(&c.cRelaySplice, "c-relay-splice", "", "HAProxy splice: auto (default where the build has splice), on or off")
	fs.IntVar(&c.cRelayThreads, "c-relay-threads", 0, "HAProxy nbthread (0: its default, one per CPU, like vncedge's loops)")
	fs.StringVar(&c.vs, "vs", "", "`URL` template of another proxy to compare with in the same run (e.g. websockify)")
	fs.StringVar(&c.vsName, "vs-name", "websockify", "label of the --vs target")
	fs.IntVar(&c.vsPid, "vs-pid", 0, "`PID` of the --vs proxy (its children are counted too)")
	fs.StringVar(&c.vsAdminURL, "vs-admin-url", "", "admin listener of the --vs proxy, as --admin-url")
	fs.BoolVar(&c.vsMayFail, "vs-may-fail", false, "failed sessions through --vs are reported but do not make the exit status non-zero\n(websockify fails hundreds of 1,000 concurrent sessions by design)")
	fs.BoolVar(&c.jsonOut, "json", false, "print the results as JSON on stdout instead of the summary")
	fs.StringVar(&c.out, "out", "", "also write the results as JSON to `FILE` (input of bench report)")
	fs.StringVar(&c.tokenFile, "token-file", "", "write a websockify token file for the VM fleet to `FILE` (for {token} templates)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "limit for one session's upgrade and RFB handshake")
	fs.IntVar(&c.perWorker, "per-worker", 8000, "most sessions per worker process (each costs it 2 of its 20,000 descriptors)")
	fs.IntVar(&c.perVM, "per-vm", 50, "sessions per simulated VM (vncedge allows 64 per upstream by default)")
	fs.IntVar(&c.vmPort, "vm-port", load.VMPort, "`port` of every simulated VM on its loopback alias (other than 5901 needs {port} in --url)")
	fs.StringVar(&c.vmListen, "vm-listen", "", "put the simulated VMs on `IP:FIRST-LAST` (one address, a port each) instead of loopback aliases,\nfor a proxy on another host; --url then needs {ip}:{port} or {token} with a token file from bench tokens --vm-listen")
	fs.BoolVar(&c.insecure, "insecure", false, "wss:// targets: accept any certificate")
	fs.StringVar(&c.caFile, "ca", "", "wss:// targets: trust the PEM certificates in `FILE` instead of the system roots")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "wss:// targets: the `NAME` to verify and send as SNI (default: the URL's host)")
	fs.BoolVar(&c.inProcess, "in-process", false, "run workers as goroutines instead of processes (small runs, debugging)")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "wait after closing before the last memory sample")
	fs.DurationVar(&c.progressEvery, "progress", 0, "print a progress line this often when stderr is not a terminal (0: 5s)")
}

// prepare checks the shared flags once they are parsed.
func (c *common) prepare() error {
	c.layout = load.Layout{Port: c.vmPort}
	if c.vmListen != "" {
		l, err := load.ParseVMListen(c.vmListen, (c.perWorker+c.perVM-1)/max(1, c.perVM))
		if err != nil {
			return err
		}
		c.layout = l
		if c.cRelay != "" {
			return errors.New("--c-relay runs HAProxy beside the VMs on loopback aliases; it does not go with --vm-listen (run the baseline on the proxy's host)")
		}
	}
	switch c.cRelay {
	case "", "haproxy":
	default:
		return fmt.Errorf("--c-relay %q: the only C relay bench runs is haproxy", c.cRelay)
	}
	for _, u := range []string{c.url, c.vs} {
		if strings.HasPrefix(u, "wss://") && c.insecure && c.caFile != "" {
			return errors.New("--insecure and --ca: choose one")
		}
	}
	return nil
}

func (c *common) tls() load.TLSOptions {
	return load.TLSOptions{Insecure: c.insecure, CAFile: c.caFile, ServerName: c.tlsServerName}
}

func (c *common) targets() ([]load.Target, error) {
	var ts []load.Target
	var baselines []string
	if c.direct {
		ts = append(ts, load.Target{Name: "direct", Direct: true})
		baselines = append(baselines, "direct")
	}
	if c.url != "" {
		if err := load.CheckTemplate(c.url); err != nil {
			return nil, err
		}
		ts = append(ts, load.Target{Name: c.name, URL: c.url, Pid: c.pid, AdminURL: c.adminURL})
	}
	if c.relay != nil {
		ts = append(ts, load.Target{Name: c.relayTargetName, URL: c.relay.URL(), Relay: true, Pid: c.relay.Pid(), RatioTo: baselines})
	}
	if c.vs != "" {
		if err := load.CheckTemplate(c.vs); err != nil {
			return nil, err
		}
		ts = append(ts, load.Target{Name: c.vsName, URL: c.vs, Pid: c.vsPid, AdminURL: c.vsAdminURL, RatioTo: baselines})
	}
	if len(ts) == 0 {
		return nil, errors.New("nothing to measure: give --url, --direct, --c-relay or --vs")
	}
	// The proxy under test is compared with every baseline and every other proxy.
	for i := range ts {
		if ts[i].Name == c.name && c.url != "" {
			var to []string
			for _, o := range ts {
				if o.Name != c.name {
					to = append(to, o.Name)
				}
			}
			ts[i].RatioTo = to
		}
	}
	seen := map[string]bool{}
	for _, t := range ts {
		if seen[t.Name] {
			return nil, fmt.Errorf("two targets are named %q: give --name or --vs-name", t.Name)
		}
		seen[t.Name] = true
	}
	return ts, nil
}

// scenarioCase is one Options to run against every target.
type scenarioCase struct {
	o load.Options
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	if err != nil {
		return errUsage{err}
	}
	if fs.NArg() > 0 {
		return errUsage{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

var errHelp = errors.New("help shown")

// errFailed is returned after a run that printed its figures but had failures: the exit
// status is 1, the figures are still written.
type errFailed struct{ lines []string }

func (e errFailed) Error() string {
	return "FAILED:\n  " + strings.Join(e.lines, "\n  ")
}

func runScenario(scenario string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { scenarioHelp(stderr, scenario, fs) }
	var c common
	c.register(fs)
	var cases []scenarioCase
	var build func() error
	traceSessions := 0
	traceMode := ""
	switch scenario {
	case "throughput":
		sessions := fs.String("sessions", "1,8", "comma-separated session counts, each run separately")
		bytes := fs.String("bytes", "1G", "bytes per session and direction (K, M, G: binary units)")
		dirs := fs.String("dirs", "down,up", "directions: down (VM->browser), up (browser->VM)")
		build = func() error {
			n, err := parseSize(*bytes)
			if err != nil {
				return err
			}
			counts, err := parseInts(*sessions)
			if err != nil {
				return err
			}
			for _, d := range strings.Split(*dirs, ",") {
				kind := load.Kind(strings.TrimSpace(d))
				if kind != load.KindDown && kind != load.KindUp {
					return fmt.Errorf("--dirs: %q is neither down nor up", d)
				}
				for _, s := range counts {
					cases = append(cases, scenarioCase{load.Options{Kind: kind, Sessions: s, Bytes: n,
						Duration: time.Duration(n/(1<<20)) * 100 * time.Millisecond}})
				}
			}
			return nil
		}
	case "latency":
		sessions := fs.Int("sessions", 1000, "sessions")
		rate := fs.Float64("rate", 10, "messages per second per session")
		size := fs.Int("size", 64, "message size in bytes (at least 8)")
		duration := fs.Duration("duration", 10*time.Second, "how long to send")
		concurrency := fs.Int("concurrency", 64, "sessions being opened at once")
		build = func() error {
			cases = append(cases, scenarioCase{load.Options{Kind: load.KindEcho, Sessions: *sessions,
				Rate: *rate, MsgSize: *size, Duration: *duration, Concurrency: *concurrency}})
			return nil
		}
	case "sessions", "setup":
		defSessions, defHold, defConc := "10000", 5*time.Second, 256
		if scenario == "setup" {
			defSessions, defHold = "5000", 0
		}
		sessions := fs.String("sessions", defSessions, "comma-separated session counts, each run separately")
		rate := fs.Float64("rate", 0, "most session opens per second (0: only --concurrency bounds the ramp)")
		concurrency := fs.Int("concurrency", defConc, "sessions being opened at once (all workers together)")
		hold := fs.Duration("hold", defHold, "how long to hold them idle before sampling memory")
		if scenario == "setup" {
			fs.StringVar(&traceMode, "strace", "auto", "count the proxies' system calls per setup over a separate ramp under strace -c -f -p:\nauto (when strace is installed), on (fail without it) or off")
			fs.IntVar(&traceSessions, "strace-sessions", 1000, "sessions in the traced ramp (tracing slows a proxy tenfold)")
		}
		build = func() error {
			if scenario == "setup" && traceMode != "auto" && traceMode != "on" && traceMode != "off" {
				return fmt.Errorf("--strace %q: want auto, on or off", traceMode)
			}
			if scenario == "setup" && traceSessions < 1 {
				return fmt.Errorf("--strace-sessions %d: want at least 1", traceSessions)
			}
			counts, err := parseInts(*sessions)
			if err != nil {
				return err
			}
			for _, s := range counts {
				cases = append(cases, scenarioCase{load.Options{Kind: load.KindHold, Sessions: s,
					OpenRate: *rate, Concurrency: *concurrency, Hold: *hold}})
			}
			return nil
		}
	case "churn":
		duration := fs.Duration("duration", 10*time.Second, "how long sessions open and close")
		concurrency := fs.Int("concurrency", 32, "concurrent open-use-close loops")
		build = func() error {
			cases = append(cases, scenarioCase{load.Options{Kind: load.KindChurn, Duration: *duration,
				Concurrency: *concurrency}})
			return nil
		}
	case "desktops":
		sessions := fs.Int("sessions", 100, "desktops (sessions)")
		kbps := fs.Float64("kbps", 256, "KB/s (1,024 bytes) of screen updates each desktop streams")
		fps := fs.Float64("fps", 20, "update requests per second per desktop (noVNC asks again after each update)")
		input := fs.Float64("input", 10, "key and pointer events per second per desktop, each timed to its answer")
		duration := fs.Duration("duration", 10*time.Second, "how long the desktops run")
		concurrency := fs.Int("concurrency", 64, "sessions being opened at once")
		build = func() error {
			d := load.DesktopLoad{KBps: *kbps, FPS: *fps, InputRate: *input}
			if _, err := d.Width(); err != nil {
				return err
			}
			if *input < 0 {
				return errors.New("--input: want at least 0")
			}
			cases = append(cases, scenarioCase{load.Options{Kind: load.KindDesktop, Sessions: *sessions,
				Desktop: d, Duration: *duration, Concurrency: *concurrency}})
			return nil
		}
	}
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	if err := c.prepare(); err != nil {
		return errUsage{err}
	}
	if err := build(); err != nil {
		return errUsage{err}
	}
	for i := range cases {
		cases[i].o.PerWorker, cases[i].o.PerVM, cases[i].o.Layout = c.perWorker, c.perVM, c.layout
	}
	if c.cRelay != "" {
		if err := c.startRelay(cases, stderr); err != nil {
			return err
		}
		defer c.relay.Stop()
	}
	targets, err := c.targets()
	if err != nil {
		return errUsage{err}
	}
	var worker []string
	if !c.inProcess {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own binary for worker processes: %w", err)
		}
		worker = []string{exe, "worker"}
	}
	if c.tokenFile != "" {
		workers, vms := 1, 1
		for _, sc := range cases {
			w, v := sc.o.Workers()
			workers, vms = max(workers, w), max(vms, v)
		}
		if err := load.WriteTokenFile(c.tokenFile, workers, vms, c.layout); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %d tokens to %s\n", workers*vms, c.tokenFile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set := &load.RunSet{Scenario: scenario, Started: time.Now().UTC(), Command: append([]string{"bench", scenario}, args...), Machine: load.ThisMachine()}
	if set.Machine.Busy() {
		fmt.Fprintf(stderr, "bench: WARNING: %s: other work competes for the cores, figures will be noisy\n", set.Machine.Busyness())
	}
	prog := newProgress(stderr, c.progressEvery)
	var failures []string
	mayFail := map[string]bool{}
	if c.vsMayFail && c.vs != "" {
		mayFail[c.vsName] = true
	}
	runOne := func(o load.Options, t load.Target) (*load.Result, error) {
		o.Scenario, o.Target, o.Timeout, o.Settle, o.WorkerCommand, o.TLS =
			scenario, t, c.timeout, c.settle, worker, c.tls()
		label := fmt.Sprintf("%s %s [%s] x%d", scenario, o.Kind, t.Name, o.Sessions)
		o.OnProgress = func(phase string, p load.Progress) { prog.update(label, phase, p, o.Sessions) }
		r, err := load.Run(ctx, o)
		prog.clear()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		return r, nil
	}
	for _, sc := range cases {
		for _, t := range targets {
			r, err := runOne(sc.o, t)
			if err != nil {
				return err
			}
			if t.Relay {
				if err := c.relay.Alive(); err != nil {
					return err
				}
			}
			set.Results = append(set.Results, r)
			if f := r.Failures(); len(f) > 0 && !mayFail[t.Name] {
				failures = append(failures, f...)
			} else if len(f) > 0 {
				r.Notes = append(r.Notes, "failures allowed by --vs-may-fail: "+strings.Join(f, "; "))
			}
			if !c.jsonOut {
				r.Print(stdout)
			}
		}
	}
	if scenario == "setup" && traceMode != "off" {
		if err := c.traceSetups(set, targets, cases, traceMode, traceSessions, runOne, stdout, stderr); err != nil {
			return err
		}
	}
	if err := finish(set, c.jsonOut, c.out, len(targets) > 1 || len(cases) > 1, stdout); err != nil {
		return err
	}
	if c.relay != nil {
		if err := c.relay.Stop(); err != nil {
			failures = append(failures, "haproxy: "+err.Error())
		}
	}
	if len(failures) > 0 {
		return errFailed{failures}
	}
	return nil
}

// finish prints the table (or the JSON) and writes --out.
func finish(set *load.RunSet, jsonOut bool, out string, table bool, stdout io.Writer) error {
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(set); err != nil {
			return err
		}
	} else if table {
		fmt.Fprintln(stdout)
		load.PrintTable(stdout, set.Results)
	}
	if out != "" {
		b, err := json.MarshalIndent(set, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	return nil
}

// startRelay starts HAProxy in front of every VM any case will start.
func (c *common) startRelay(cases []scenarioCase, stderr io.Writer) error {
	seen := map[string]bool{}
	var vms []string
	most := 0
	for _, sc := range cases {
		o := sc.o
		if o.Kind == load.KindChurn {
			most = max(most, o.Concurrency)
		} else {
			most = max(most, o.Sessions)
		}
		for _, a := range o.VMAddrs() {
			if !seen[a] {
				seen[a] = true
				vms = append(vms, a)
			}
		}
	}
	r, err := crelay.Start(vms, crelay.Options{Splice: c.cRelaySplice, Threads: c.cRelayThreads, MaxSessions: most})
	if err != nil {
		return fmt.Errorf("--c-relay haproxy: %w", err)
	}
	c.relay, c.relayTargetName = r, "haproxy"
	fmt.Fprintf(stderr, "bench: C relay: %s, TCP mode, splice %s, %d listeners on port %d, pid %d\n",
		r.Version, r.Splice, len(vms), r.Port, r.Pid())
	return nil
}

// traceSetups runs one more, smaller ramp per local proxy under strace and adds the
// syscalls per setup to that proxy's result of the last case.
func (c *common) traceSetups(set *load.RunSet, targets []load.Target, cases []scenarioCase, mode string, n int,
	runOne func(load.Options, load.Target) (*load.Result, error), stdout, stderr io.Writer) error {
	if _, err := strace.Available(); err != nil {
		if mode == "on" {
			return fmt.Errorf("--strace on: %w (apt-get install strace)", err)
		}
		fmt.Fprintln(stderr, "bench: SKIPPED the syscall count: strace is not installed (apt-get install strace)")
		return nil
	}
	last := cases[len(cases)-1].o
	// Within the last case's fleet, so a relay's listeners cover every VM of the ramp.
	last.Sessions, last.Hold = min(n, last.Sessions), 0
	for _, t := range targets {
		if t.Direct || t.Pid == 0 {
			continue
		}
		var traced *load.Result
		sum, err := strace.Trace(t.Pid, func() error {
			var err error
			traced, err = runOne(last, load.Target{Name: t.Name, URL: t.URL, Relay: t.Relay, Token: t.Token})
			return err
		})
		if err != nil {
			if mode == "on" {
				return fmt.Errorf("strace %s (pid %d): %w", t.Name, t.Pid, err)
			}
			fmt.Fprintf(stderr, "bench: SKIPPED the syscall count of %s: %v\n", t.Name, err)
			continue
		}
		if traced.Opened == 0 {
			fmt.Fprintf(stderr, "bench: the traced ramp through %s opened nothing: no syscall count\n", t.Name)
			continue
		}
		st := &load.SyscallStats{Setups: traced.Opened, Calls: sum.Total, PerSetup: float64(sum.Total) / float64(traced.Opened), Top: sum.Top(6)}
		for i := len(set.Results) - 1; i >= 0; i-- {
			if set.Results[i].Target.Name == t.Name {
				set.Results[i].Syscalls = st
				break
			}
		}
		if !c.jsonOut {
			fmt.Fprintf(stdout, "setup [%s]: %.1f syscalls per session setup (strace -c -f over %d setups, %d calls); top: %s\n",
				t.Name, st.PerSetup, st.Setups, st.Calls, strings.Join(st.Top, ", "))
		}
	}
	return nil
}

// progress prints a live line: rewritten in place on a terminal, every few seconds otherwise.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	every time.Duration
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, every time.Duration) *progress {
	p := &progress{w: w, every: every}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	if p.every <= 0 {
		p.every = 5 * time.Second
	}
	return p
}

func (p *progress) update(label, phase string, s load.Progress, sessions int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tty && time.Since(p.last) < p.every {
		return
	}
	p.last = time.Now()
	line := fmt.Sprintf("%s: %s %d/%d open, %d failed, %.1f MB, %d msgs, %d churned",
		label, phaseName(phase), s.Opened, sessions, s.Failed, float64(s.Bytes)/1e6, s.Messages, s.Churned)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func phaseName(phase string) string {
	switch phase {
	case "opened":
		return "opening"
	case "ran":
		return "running"
	case "done":
		return "closing"
	}
	return phase
}

func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseSize reads 512, 64K, 256M, 1G (binary units).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 1 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

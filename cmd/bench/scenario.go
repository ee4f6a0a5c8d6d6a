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

	"vncedge/bench/load"
)

// common holds the flags every scenario shares.
type common struct {
	url, name     string
	pid           int
	direct        bool
	vs, vsName    string
	vsPid         int
	jsonOut       bool
	out           string
	tokenFile     string
	timeout       time.Duration
	perWorker     int
	perVM         int
	vmPort        int
	inProcess     bool
	settle        time.Duration
	progressEvery time.Duration
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "proxy URL `template`: {ip} {port} {token} are filled per session\n(ws://127.0.0.1:6080/vnc/{ip} or ws://127.0.0.1:6080/websockify?token={token})")
	fs.StringVar(&c.name, "name", "vncedge", "label of the --url target")
	fs.IntVar(&c.pid, "pid", 0, "`PID` of the --url proxy: sample its memory and descriptors from /proc")
	fs.BoolVar(&c.direct, "direct", false, "also run the baseline: clients talk WebSocket to the VMs themselves, no proxy")
	fs.StringVar(&c.vs, "vs", "", "`URL` template of another proxy to compare with in the same run (e.g. websockify)")
	fs.StringVar(&c.vsName, "vs-name", "websockify", "label of the --vs target")
	fs.IntVar(&c.vsPid, "vs-pid", 0, "`PID` of the --vs proxy (its children are counted too)")
	fs.BoolVar(&c.jsonOut, "json", false, "print the results as JSON on stdout instead of the summary")
	fs.StringVar(&c.out, "out", "", "also write the results as JSON to `FILE` (input of bench report)")
	fs.StringVar(&c.tokenFile, "token-file", "", "write a websockify token file for the VM fleet to `FILE` (for {token} templates)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "limit for one session's upgrade and RFB handshake")
	fs.IntVar(&c.perWorker, "per-worker", 8000, "most sessions per worker process (each costs it 2 of its 20,000 descriptors)")
	fs.IntVar(&c.perVM, "per-vm", 50, "sessions per simulated VM (vncedge allows 64 per upstream by default)")
	fs.IntVar(&c.vmPort, "vm-port", load.VMPort, "`port` of every simulated VM (other than 5901 needs {port} in --url)")
	fs.BoolVar(&c.inProcess, "in-process", false, "run workers as goroutines instead of processes (small runs, debugging)")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "wait after closing before the last memory sample")
	fs.DurationVar(&c.progressEvery, "progress", 0, "print a progress line this often when stderr is not a terminal (0: 5s)")
}

func (c *common) targets() ([]load.Target, error) {
	var ts []load.Target
	if c.direct {
		ts = append(ts, load.Target{Name: "direct", Direct: true})
	}
	if c.url != "" {
		if err := load.CheckTemplate(c.url); err != nil {
			return nil, err
		}
		ts = append(ts, load.Target{Name: c.name, URL: c.url, Pid: c.pid})
	}
	if c.vs != "" {
		if err := load.CheckTemplate(c.vs); err != nil {
			return nil, err
		}
		ts = append(ts, load.Target{Name: c.vsName, URL: c.vs, Pid: c.vsPid})
	}
	if len(ts) == 0 {
		return nil, errors.New("nothing to measure: give --url, --direct or --vs")
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
	if err == nil && fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return err
}

var errHelp = errors.New("help shown")

func runScenario(scenario string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	var cases []scenarioCase
	var build func() error
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
	case "sessions":
		sessions := fs.String("sessions", "10000", "comma-separated session counts, each run separately")
		rate := fs.Float64("rate", 0, "most session opens per second (0: only --concurrency bounds the ramp)")
		concurrency := fs.Int("concurrency", 256, "sessions being opened at once (all workers together)")
		hold := fs.Duration("hold", 5*time.Second, "how long to hold them idle before sampling memory")
		build = func() error {
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
	}
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	if err := build(); err != nil {
		return err
	}
	targets, err := c.targets()
	if err != nil {
		return err
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
			o := sc.o
			o.PerWorker, o.PerVM = c.perWorker, c.perVM
			w, v := o.Workers()
			workers, vms = max(workers, w), max(vms, v)
		}
		if err := load.WriteTokenFile(c.tokenFile, workers, vms, c.vmPort); err != nil {
			return err
		}
		// A proxy that polls the file needs a moment to see it.
		fmt.Fprintf(stderr, "bench: wrote %d tokens to %s\n", workers*vms, c.tokenFile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set := &load.RunSet{Scenario: scenario, Started: time.Now().UTC(), Command: append([]string{"bench", scenario}, args...), Machine: load.ThisMachine()}
	if set.Machine.Busy() {
		fmt.Fprintf(stderr, "bench: WARNING: load %.1f on %d CPUs before starting: other work competes for the cores, figures will be noisy\n",
			set.Machine.Load, set.Machine.CPUs)
	}
	prog := newProgress(stderr, c.progressEvery)
	for _, sc := range cases {
		for _, t := range targets {
			o := sc.o
			o.Scenario, o.Target, o.Timeout, o.PerWorker, o.PerVM, o.Settle, o.WorkerCommand, o.VMPort =
				scenario, t, c.timeout, c.perWorker, c.perVM, c.settle, worker, c.vmPort
			label := fmt.Sprintf("%s %s [%s] x%d", scenario, o.Kind, t.Name, o.Sessions)
			o.OnProgress = func(phase string, p load.Progress) { prog.update(label, phase, p, o.Sessions) }
			r, err := load.Run(ctx, o)
			prog.clear()
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			set.Results = append(set.Results, r)
			if !c.jsonOut {
				r.Print(stdout)
			}
		}
	}
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(set); err != nil {
			return err
		}
	} else if len(targets) > 1 || len(cases) > 1 {
		fmt.Fprintln(stdout)
		load.PrintTable(stdout, set.Results)
	}
	if c.out != "" {
		b, err := json.MarshalIndent(set, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(c.out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
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

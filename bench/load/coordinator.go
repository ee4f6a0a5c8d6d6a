package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"vncedge/bench/procstat"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Options describe one scenario run against one target.
type Options struct {
	Scenario string
	Kind     Kind
	Target   Target
	Sessions int
	// PerWorker is the most sessions one worker process holds: each costs it two descriptors
	// (client and VM), and this machine allows 20,000 per process. Default 8,000.
	PerWorker int
	// PerVM is how many sessions share one simulated VM (vncedge limits sessions per
	// upstream, 64 by default). Default 50.
	PerVM       int
	Concurrency int
	OpenRate    float64
	Bytes       int64
	Rate        float64
	MsgSize     int
	Duration    time.Duration
	Timeout     time.Duration
	// Hold is how long sessions stay open and idle before the memory sample at N.
	Hold time.Duration
	// Settle is how long to wait after closing before the last memory sample.
	Settle time.Duration
	// WorkerCommand re-executes the generator as a worker process (it must run ServeWorker);
	// empty runs the workers as goroutines of this process.
	WorkerCommand []string
	// OnProgress, when set, gets the summed running counts about twice a second.
	OnProgress func(phase string, p Progress)
	// ProcRoot is where /proc is (tests); default "/proc".
	ProcRoot string
	// Layout places the VMs: loopback aliases on one port (Port 0 means VMPort, 5901,
	// what /vnc/{ip} reaches; other ports need {port} in the URL template) or one address
	// with a port range (--vm-listen).
	Layout Layout
	// Desktop shapes KindDesktop runs.
	Desktop DesktopLoad
	// TLS configures wss:// targets.
	TLS TLSOptions
	// TokenSecret signs TokenJWT tokens.
	TokenSecret []byte
}

func (o *Options) defaults() error {
	if o.Sessions < 1 && o.Kind != KindChurn {
		return fmt.Errorf("sessions %d: want at least 1", o.Sessions)
	}
	if o.PerWorker <= 0 {
		o.PerWorker = 8000
	}
	if o.PerVM <= 0 {
		o.PerVM = 50
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MsgSize < echoHeader {
		o.MsgSize = 64
	}
	if o.Kind == KindEcho && o.Rate <= 0 {
		o.Rate = 10
	}
	if o.Kind == KindDesktop {
		if _, err := o.Desktop.Width(); err != nil {
			return err
		}
		if o.Duration <= 0 {
			return errors.New("desktop: want a duration")
		}
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if !o.Target.Direct {
		if err := CheckTemplate(o.Target.URL); err != nil {
			return err
		}
	}
	return nil
}

// Workers is how many workers (and VMs per worker) a run of o uses.
func (o Options) Workers() (workers, vmsPerWorker int) {
	perWorker, perVM := o.PerWorker, o.PerVM
	if perWorker <= 0 {
		perWorker = 8000
	}
	if perVM <= 0 {
		perVM = 50
	}
	if o.Kind == KindChurn {
		return 1, max(1, min(o.Concurrency, 64))
	}
	workers = max(1, (o.Sessions+perWorker-1)/perWorker)
	per := (o.Sessions + workers - 1) / workers
	return workers, max(1, (per+perVM-1)/perVM)
}

// VMAddrs lists the host:port of every VM a run of o starts.
func (o Options) VMAddrs() []string {
	workers, vms := o.Workers()
	var out []string
	for w := 0; w < workers; w++ {
		for i := 0; i < vms; i++ {
			vm := o.Layout.VM(w, i)
			out = append(out, net.JoinHostPort(vm.IP, strconv.Itoa(vm.Port)))
		}
	}
	return out
}

// workerHandle is the coordinator's side of one worker.
type workerHandle struct {
	cmds chan string
	cmd  *exec.Cmd
	in   io.WriteCloser
}

func (h *workerHandle) send(c string) {
	if h.in != nil {
		fmt.Fprintln(h.in, c)
		return
	}
	h.cmds <- c
}

type workerEvent struct {
	worker int
	ev     Event
}

// Run runs one scenario against one target and returns its figures.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	workers, vms := o.Workers()
	if workers > MaxWorkers {
		return nil, fmt.Errorf("%d sessions need %d workers, over %d", o.Sessions, workers, MaxWorkers)
	}
	if err := o.Layout.Check(workers, vms); err != nil {
		return nil, err
	}
	res := &Result{Scenario: o.Scenario, Kind: o.Kind, Target: o.Target, Sessions: o.Sessions,
		Workers: workers, VMs: workers * vms, Bytes: o.Bytes, Rate: o.Rate, MsgSize: o.MsgSize,
		Duration: o.Duration.Seconds()}
	if o.Kind == KindDesktop {
		res.Desktop = &DesktopResult{Load: o.Desktop}
	}
	host, hostErr := procstat.ReadHostCPU(o.ProcRoot)
	smp := newSampler(o.Target, o.ProcRoot)
	if smp.enabled() {
		s, err := smp.read()
		if err != nil {
			return nil, err
		}
		res.Proxy = &ProxyMem{Before: s}
	}
	// Token lookups matter for setups through token routing: only ramps of held sessions
	// with a {token} URL read them.
	lookups := newLookupWatch(o.Target)
	if o.Kind == KindHold && strings.Contains(o.Target.URL, "{token}") {
		lookups.start()
	} else {
		lookups.admin = ""
	}
	gen := newGenCPU(o.ProcRoot)
	events := make(chan workerEvent, 64)
	handles := make([]*workerHandle, workers)
	var wg sync.WaitGroup
	defer func() {
		// Stop what is left (only on an early return), and keep reading events until every
		// worker goroutine is gone so none blocks on a send.
		for _, h := range handles {
			if h == nil {
				continue
			}
			if h.cmds != nil {
				close(h.cmds)
			}
			if h.in != nil {
				h.in.Close()
			}
			if h.cmd != nil && h.cmd.Process != nil && h.cmd.ProcessState == nil {
				_ = h.cmd.Process.Kill()
			}
		}
		allDone := make(chan struct{})
		go func() { wg.Wait(); close(allDone) }()
		go func() {
			for {
				select {
				case <-events:
				case <-allDone:
					return
				}
			}
		}()
	}()
	left := o.Sessions
	for w := 0; w < workers; w++ {
		n := min(left, (o.Sessions+workers-1)/workers)
		left -= n
		job := Job{Kind: o.Kind, Worker: w, Target: o.Target, Sessions: n, VMs: vms,
			Concurrency: max(1, o.Concurrency/workers), OpenRate: o.OpenRate / float64(workers),
			Bytes: o.Bytes, Rate: o.Rate, MsgSize: o.MsgSize, Duration: o.Duration, Timeout: o.Timeout,
			Layout: o.Layout, Desktop: o.Desktop, TLS: o.TLS, TokenSecret: o.TokenSecret}
		if o.Kind == KindChurn {
			job.Concurrency = o.Concurrency
		}
		h, err := startWorker(job, o.WorkerCommand, events, &wg)
		if err != nil {
			return nil, err
		}
		handles[w] = h
	}
	parts := make([]*Part, workers)
	wait := func(phase string) error {
		got := 0
		reached := make([]bool, workers)
		progress := make([]Progress, workers)
		for got < workers {
			var we workerEvent
			select {
			case <-ctx.Done():
				return ctx.Err()
			case we = <-events:
			}
			switch we.ev.Type {
			case "progress":
				progress[we.worker] = *we.ev.Progress
				if o.OnProgress != nil {
					o.OnProgress(phase, sumProgress(progress))
				}
			case phase:
				parts[we.worker] = we.ev.Part
				reached[we.worker] = true
				got++
			case "error":
				return fmt.Errorf("worker %d: %s", we.worker, we.ev.Err)
			case "exit":
				if !reached[we.worker] {
					return fmt.Errorf("worker %d exited before %q", we.worker, phase)
				}
			}
		}
		return nil
	}
	if err := wait("opened"); err != nil {
		return nil, err
	}
	// The ramp is over: the proxy's CPU since Before went into setting sessions up, and
	// the workers' into opening them.
	if res.Proxy != nil {
		if s, err := smp.read(); err == nil {
			res.Proxy.Opened = s
		}
	}
	res.GeneratorCPUSeconds, res.RampSeconds = gen.since(handles)
	var note string
	if res.Lookups, note = lookups.finish(); note != "" {
		res.Notes = append(res.Notes, note)
	}
	if o.Hold > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(o.Hold):
		}
	}
	if res.Proxy != nil {
		if s, err := smp.read(); err == nil {
			res.Proxy.AtN = s
		}
	}
	for _, h := range handles {
		h.send("go")
	}
	if err := wait("ran"); err != nil {
		return nil, err
	}
	if now, err := procstat.ReadHostCPU(o.ProcRoot); err == nil && hostErr == nil {
		res.HostStealPct = procstat.StealPct(host, now)
	}
	if res.Proxy != nil && o.Kind != KindHold {
		if s, err := smp.read(); err == nil {
			res.Proxy.Peak = s
		}
	}
	for _, h := range handles {
		h.send("close")
	}
	if err := wait("done"); err != nil {
		return nil, err
	}
	if res.Proxy != nil {
		if o.Settle > 0 {
			time.Sleep(o.Settle)
		}
		if s, err := smp.read(); err == nil {
			res.Proxy.After = s
		}
	}
	res.merge(parts)
	return res, nil
}

func sumProgress(ps []Progress) Progress {
	var t Progress
	for _, p := range ps {
		t.Opened += p.Opened
		t.Failed += p.Failed
		t.Bytes += p.Bytes
		t.Messages += p.Messages
		t.Churned += p.Churned
	}
	return t
}

// startWorker runs a job in a goroutine (no command) or in a re-executed process.
func startWorker(job Job, command []string, events chan<- workerEvent, wg *sync.WaitGroup) (*workerHandle, error) {
	h := &workerHandle{}
	if len(command) == 0 {
		h.cmds = make(chan string, 4)
		ctl := &chanControl{worker: job.Worker, events: events, cmds: h.cmds}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = RunWorker(job, ctl)
			events <- workerEvent{job.Worker, Event{Type: "exit"}}
		}()
		return h, nil
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stderr = os.Stderr
	// A worker outlives nothing: if the coordinator dies, so does it (and its VMs).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", job.Worker, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", job.Worker, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("worker %d: start %v: %w", job.Worker, command, err)
	}
	h.cmd, h.in = cmd, in
	if err := json.NewEncoder(in).Encode(job); err != nil {
		return nil, fmt.Errorf("worker %d: send job: %w", job.Worker, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<20) // parts carry histograms
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = Event{Type: "error", Err: fmt.Sprintf("bad event %q: %v", sc.Bytes(), err)}
			}
			events <- workerEvent{job.Worker, ev}
		}
		_ = cmd.Wait()
		events <- workerEvent{job.Worker, Event{Type: "exit"}}
	}()
	return h, nil
}

type chanControl struct {
	worker int
	events chan<- workerEvent
	cmds   <-chan string
}

func (c *chanControl) Emit(ev Event) error {
	c.events <- workerEvent{c.worker, ev}
	return nil
}

func (c *chanControl) Wait(cmd string) error {
	for got := range c.cmds {
		if got == cmd {
			return nil
		}
	}
	return errors.New("coordinator went away")
}

// ServeWorker is the body of a worker process: a Job as one JSON line on r, then commands
// ("go", "close") one per line; events go to w as JSON lines.
func ServeWorker(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return fmt.Errorf("worker: no job: %v", sc.Err())
	}
	var job Job
	if err := json.Unmarshal(sc.Bytes(), &job); err != nil {
		return fmt.Errorf("worker: bad job: %w", err)
	}
	ctl := &stdioControl{sc: sc, enc: json.NewEncoder(w)}
	return RunWorker(job, ctl)
}

type stdioControl struct {
	sc  *bufio.Scanner
	mu  sync.Mutex
	enc *json.Encoder
}

func (c *stdioControl) Emit(ev Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Encode(ev)
}

func (c *stdioControl) Wait(cmd string) error {
	for c.sc.Scan() {
		if c.sc.Text() == cmd {
			return nil
		}
	}
	return fmt.Errorf("worker: coordinator went away waiting for %q", cmd)
}

// mergeHist merges the snapshots of a field of every part.
func mergeHist(parts []*Part, get func(*Part) *hdrhistogram.Snapshot) *hdrhistogram.Histogram {
	var snaps []*hdrhistogram.Snapshot
	for _, p := range parts {
		if p != nil {
			snaps = append(snaps, get(p))
		}
	}
	return MergeSnapshots(snaps...)
}

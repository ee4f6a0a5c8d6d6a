package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vncedge/bench/load"
	"vncedge/bench/tokensrc"
)

// runTokenSources is `bench token-sources`: the setup rate through each token source.
func runTokenSources(args []string, stdout, stderr io.Writer) error {
	const scenario = "token-sources"
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { scenarioHelp(stderr, scenario, fs) }
	vncedge := fs.String("vncedge", "", "the vncedge `BINARY` to start per source (default: vncedge beside bench, else on PATH)")
	sources := fs.String("sources", strings.Join(tokensrc.Names(), ","), "sources in order; the first is the others' baseline")
	sessions := fs.Int("sessions", 5000, "sessions per source, each with its own token")
	concurrency := fs.Int("concurrency", 1000, "setups in flight at once")
	direct := fs.Bool("direct", false, "also open the sessions with no proxy: the generator's own rate")
	var extra listFlag
	fs.Var(&extra, "vncedge-arg", "an extra flag for every vncedge (repeatable; e.g. --vncedge-arg=--token-cache-ttl=0)")
	dir := fs.String("dir", "", "keep token files, keys and logs in `DIR` (default: a temp dir, removed)")
	jsonOut := fs.Bool("json", false, "print the results as JSON on stdout instead of the summary")
	out := fs.String("out", "", "also write the results as JSON to `FILE`")
	timeout := fs.Duration("timeout", 10*time.Second, "limit for one session's upgrade and RFB handshake")
	perVM := fs.Int("per-vm", 50, "sessions per simulated VM")
	perWorker := fs.Int("per-worker", 8000, "most sessions per worker process")
	vmPort := fs.Int("vm-port", load.VMPort, "port of every simulated VM")
	inProcess := fs.Bool("in-process", false, "run workers as goroutines instead of processes")
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	if *sessions < 1 || *concurrency < 1 {
		return errUsage{errors.New("--sessions and --concurrency: want at least 1")}
	}
	names := strings.Split(*sources, ",")
	known := map[string]bool{}
	for _, n := range tokensrc.Names() {
		known[n] = true
	}
	for i, n := range names {
		names[i] = strings.TrimSpace(n)
		if !known[names[i]] {
			return errUsage{fmt.Errorf("--sources: %q is not one of %s", n, strings.Join(tokensrc.Names(), ", "))}
		}
	}
	bin, err := findVncedge(*vncedge)
	if err != nil {
		return errUsage{err}
	}
	var worker []string
	if !*inProcess {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		worker = []string{exe, "worker"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set := &load.RunSet{Scenario: scenario, Started: time.Now().UTC(), Command: append([]string{"bench", scenario}, args...), Machine: load.ThisMachine()}
	if set.Machine.Busy() {
		fmt.Fprintf(stderr, "bench: WARNING: %s: figures will be noisy\n", set.Machine.Busyness())
	}
	o := load.Options{Scenario: scenario, Kind: load.KindHold, Sessions: *sessions, Concurrency: *concurrency,
		PerVM: *perVM, PerWorker: *perWorker, Layout: load.Layout{Port: *vmPort}, Timeout: *timeout, WorkerCommand: worker}
	var failures []string
	keep := func(r *load.Result) {
		set.Results = append(set.Results, r)
		failures = append(failures, r.Failures()...)
		if !*jsonOut {
			r.Print(stdout)
		}
	}
	if *direct {
		d := o
		d.Target = load.Target{Name: "direct", Direct: true}
		r, err := load.Run(ctx, d)
		if err != nil {
			return fmt.Errorf("direct: %w", err)
		}
		keep(r)
	}
	fmt.Fprintf(stderr, "bench: %s: %s, %d sessions each, %d setups in flight, vncedge %s\n", scenario, strings.Join(names, ", "), *sessions, *concurrency, bin)
	_, err = tokensrc.Run(ctx, tokensrc.RunOptions{Vncedge: bin, Sources: names, Dir: *dir, Extra: extra, Options: o, OnResult: func(r *load.Result) {
		if *direct && r.Target.Name == names[0] {
			r.Target.RatioTo = []string{"direct"}
		}
		keep(r)
	}})
	if ferr := finish(set, *jsonOut, *out, len(set.Results) > 1, stdout); ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if len(failures) > 0 {
		return errFailed{failures}
	}
	return nil
}

// findVncedge resolves --vncedge: the flag, vncedge beside this binary, or PATH.
func findVncedge(flagValue string) (string, error) {
	if flagValue != "" {
		if _, err := os.Stat(flagValue); err != nil {
			return "", fmt.Errorf("--vncedge: %w", err)
		}
		return flagValue, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "vncedge")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("vncedge")
	if err != nil {
		return "", errors.New("no vncedge binary: give --vncedge (go build -o bin/vncedge ./cmd/vncedge)")
	}
	return p, nil
}

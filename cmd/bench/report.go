package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"vncedge/bench/load"
	"vncedge/bench/report"
)

func runReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "bench-report", "`DIR` for report.md and its SVG charts")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bench report [--out DIR] RESULTS.json... (files written by a scenario's --out)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("no result files")
	}
	var sets []*load.RunSet
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var s load.RunSet
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		sets = append(sets, &s)
	}
	if err := report.Write(*out, sets); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "report: %s\n", filepath.Join(*out, "report.md"))
	return nil
}

// runTokens writes the token file a proxy needs before any scenario starts (scenarios can
// write it too, with --token-file, but a proxy may want it at start-up).
func runTokens(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench tokens", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "token file to write")
	sessions := fs.Int("sessions", 50000, "the most sessions a run will open")
	perWorker := fs.Int("per-worker", 8000, "as given to the scenarios")
	perVM := fs.Int("per-vm", 50, "as given to the scenarios")
	vmPort := fs.Int("vm-port", load.VMPort, "as given to the scenarios")
	vmListen := fs.String("vm-listen", "", "as given to the scenarios (`IP:FIRST-LAST`)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return errUsage{err}
	}
	if *file == "" {
		return errUsage{fmt.Errorf("--file is required")}
	}
	layout := load.Layout{Port: *vmPort}
	if *vmListen != "" {
		l, err := load.ParseVMListen(*vmListen, (*perWorker+*perVM-1)/max(1, *perVM))
		if err != nil {
			return errUsage{err}
		}
		layout = l
	}
	o := load.Options{Kind: load.KindHold, Sessions: *sessions, PerWorker: *perWorker, PerVM: *perVM}
	w, v := o.Workers()
	// Churn uses up to 64 VMs on worker 0 whatever the session count.
	v = max(v, 64)
	if layout.IP != "" {
		// Only the ports the range holds: the scenarios check their own fleet against it.
		v = min(v, layout.Stride)
		if err := layout.Check(w, v); err != nil {
			return errUsage{err}
		}
	}
	return load.WriteTokenFile(*file, w, v, layout)
}

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

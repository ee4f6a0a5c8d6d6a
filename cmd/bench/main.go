// Command bench is vncedge's load generator and simulated VM: `bench vm` serves simulated
// VNC servers, the scenarios drive WebSocket clients through a proxy and measure it.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"vncedge/bench/load"
)

// usage is the top-level help, with every scenario's one-line summary.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: bench <command> [flags]\n\nscenarios:\n")
	docs := scenarioDocs()
	for _, n := range scenarioNames() {
		fmt.Fprintf(&b, "  %-14s %s\n", n, docs[n].summary)
	}
	b.WriteString(`
other commands:
  report         Markdown report with SVG charts from --out files
  vm             serve simulated VMs (RFB 3.8 servers), or replay a recording, until interrupted
  tokens         write a websockify token file naming every VM a run may start
  help SCENARIO  a scenario's description, examples and flags (also: bench SCENARIO --help)

Every scenario measures --url (a proxy; {ip} {port} {token} filled per session),
--direct (the baseline, no proxy), --c-relay haproxy (HAProxy relaying the VMs' own
WebSocket: the C-relay baseline) and --vs (another proxy) in one run, and prints
the ratios with which way is better. Exit status: 0 clean, 1 failed sessions or
errors, 2 bad flags.
`)
	return b.String()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks bad flags or arguments: exit status 2.
type errUsage struct{ err error }

func (e errUsage) Error() string { return e.err.Error() }
func (e errUsage) Unwrap() error { return e.err }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	var err error
	switch args[0] {
	case "vm":
		err = runVM(args[1:], stdout, stderr)
	case "throughput", "latency", "sessions", "setup", "churn", "desktops":
		err = runScenario(args[0], args[1:], stdout, stderr)
	case "token-sources":
		err = runTokenSources(args[1:], stdout, stderr)
	case "report":
		err = runReport(args[1:], stdout, stderr)
	case "tokens":
		err = runTokens(args[1:], stderr)
	case "worker":
		// Internal: a worker process of a scenario, driven over stdin/stdout.
		err = load.ServeWorker(os.Stdin, stdout)
	case "help":
		return runHelp(args[1:], stdout, stderr)
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usage())
		return 0
	default:
		fmt.Fprintf(stderr, "bench: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench %s: %v\n", args[0], err)
		var u errUsage
		if errors.As(err, &u) {
			return 2
		}
		return 1
	}
	return 0
}

// Command bench is vncedge's load generator and simulated VM: `bench vm` serves simulated
// VNC servers, the scenarios drive WebSocket clients through a proxy and measure it.
package main

import (
	"fmt"
	"io"
	"os"

	"vncedge/bench/load"
)

const usage = `usage: bench <command> [flags]

commands:
  throughput  one and N sessions stream as fast as they can, both ways: MB/s
  latency     N sessions send small messages at a fixed rate, echoed: round trips
  sessions    open N sessions (past the RFB greeting), hold them: setup rate, memory
  churn       sessions open, use and close continuously: errors and leaks
  report      Markdown report with SVG charts from --out files
  vm          serve simulated VMs (RFB 3.8 servers), or replay a recording, until interrupted
  tokens      write a websockify token file naming every VM a run may start

Every scenario measures --url (a proxy; {ip} {port} {token} filled per session),
--direct (the baseline, no proxy) and --vs (another proxy) in one run, and prints
the ratios.

Run "bench <command> -h" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "vm":
		err = runVM(args[1:], stdout, stderr)
	case "throughput", "latency", "sessions", "churn":
		err = runScenario(args[0], args[1:], stdout, stderr)
	case "report":
		err = runReport(args[1:], stdout, stderr)
	case "tokens":
		err = runTokens(args[1:], stderr)
	case "worker":
		// Internal: a worker process of a scenario, driven over stdin/stdout.
		err = load.ServeWorker(os.Stdin, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "bench: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

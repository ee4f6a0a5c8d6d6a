// Command bench is vncedge's load generator and simulated VM: `bench vm` serves simulated
// VNC servers, the scenarios drive WebSocket clients through a proxy and measure it.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: bench <command> [flags]

commands:
  vm          serve simulated VMs (RFB 3.8 servers) until interrupted

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

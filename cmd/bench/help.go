package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// scenarioDoc is what `bench help SCENARIO` says before the flags.
type scenarioDoc struct {
	summary  string
	about    string
	examples []string
}

// scenarioDocs describes every scenario; a function, so no package state is shared.
func scenarioDocs() map[string]scenarioDoc {
	return map[string]scenarioDoc{
		"throughput": {
			summary: "one and N sessions stream as fast as they can, both ways: MB/s",
			about: `Each session moves --bytes VM->browser (down: the VM streams a checked byte pattern)
and browser->VM (up: the client sends masked frames). Figures: MB/s (higher is better)
and the proxy's CPU seconds per GB moved (lower is better).`,
			examples: []string{
				"bench throughput --direct --url 'ws://127.0.0.1:6080/vnc/{ip}' --pid $(pidof vncedge) --c-relay haproxy",
				"bench throughput --url 'wss://edge.example:443/vnc/{ip}:{port}' --vm-listen 192.0.2.10:20000-20999 --ca ca.pem --admin-url http://edge.example:6089",
			},
		},
		"latency": {
			summary: "N sessions send small messages at a fixed rate, echoed: round trips",
			about: `Every session sends --size byte messages at --rate per second, each stamped with the
time it was due, and the VM echoes them. Figures: round-trip p50/p99/p99.9 (lower is
better), failed sessions and errors (lower is better).`,
			examples: []string{
				"bench latency --direct --url 'ws://127.0.0.1:6080/vnc/{ip}' --pid P --c-relay haproxy --sessions 1000 --rate 10",
			},
		},
		"sessions": {
			summary: "open N sessions (past the RFB greeting), hold them: setup rate, memory, CPU per setup",
			about: `Opens --sessions sessions with --concurrency in flight, holds them --hold, closes them.
Figures: setup/s (higher is better), setup p99, the proxy's resident KiB per session and
the share returned after close, and its CPU per setup over the ramp (lower is better).`,
			examples: []string{
				"bench sessions --direct --url 'ws://127.0.0.1:6080/vnc/{ip}' --pid P --sessions 1000,5000,9900 --hold 5s",
			},
		},
		"setup": {
			summary: "ramp thousands of setups: proxy CPU and syscalls per setup beside the generator's own rate",
			about: `The setup cost of issue 14: --sessions sessions opened as fast as --concurrency allows
while the proxy's user+system CPU is read from /proc/PID/stat before and after the ramp
(or process_cpu_seconds_total from --admin-url), divided by the setups (target: at most
100 us). --direct in the same run shows the generator's own rate: when it is well above
the proxy's, the generator was not the limit. Then, with strace installed, a separate
ramp of --strace-sessions under strace -c -f -p counts syscalls per setup (tracing slows
the proxy, so that ramp gives counts, never rates).`,
			examples: []string{
				"bench setup --direct --url 'ws://127.0.0.1:6080/vnc/{ip}' --pid P --c-relay haproxy --sessions 5000",
				"bench setup --url 'ws://127.0.0.1:6080/websockify?token={token}' --token-file T --pid P --strace on",
			},
		},
		"churn": {
			summary: "sessions open, use and close continuously: errors and leaks",
			about: `--concurrency loops each open a session, read one update and close, for --duration.
Figures: sessions/s (higher is better), failures, descriptors leaked and RSS growth
(lower is better).`,
			examples: []string{
				"bench churn --direct --url 'ws://127.0.0.1:6080/vnc/{ip}' --pid P --duration 10s",
			},
		},
		"desktops": {
			summary: "N noVNC-like desktops streaming X KB/s with M input events/s: fairness and input round trips",
			about: `noVNC's pattern: every desktop asks for an incremental update --fps times a second (one
request in flight, as noVNC keeps), and its VM answers with a band of pixels sized so the
stream is --kbps KB/s; meanwhile --input key and pointer events per second go the other
way, each followed by a one-pixel update request whose answer times the input's round
trip. Figures: per-session KB/s min/median/max and Jain's fairness index (1 is fair,
higher is better), input round-trip p50/p99/p99.9 (lower is better), input events the
VMs never saw (a failure).`,
			examples: []string{
				"bench desktops --direct --url 'ws://127.0.0.1:6080/vnc/{ip}' --pid P --c-relay haproxy --sessions 200 --kbps 256 --input 10",
				"bench desktops --url 'wss://edge.example/vnc/{ip}:{port}' --vm-listen 192.0.2.10:20000-20999 --insecure --admin-url http://edge.example:6089",
			},
		},
		"token-sources": {
			summary: "session setup rate through each token source (file, Redis, JWT, HTTP) in one run",
			about: `Starts, for each source in turn, what it needs (a token file; a real redis-server on a
free loopback port with the keys loaded; an HS256 key file, tokens signed by bench; an
HTTP lookup service on loopback) and a fresh vncedge (--vncedge) reading only that
source, then opens --sessions sessions with --concurrency setups in flight, every session
with its own token so each setup is a real lookup. Figures: setup/s (higher is better)
and setup p99 beside the token file's, the proxy's CPU per setup, and lookup p99 per
source from the proxy's vncedge_token_lookup_duration_seconds when it has one.`,
			examples: []string{
				"bench token-sources --vncedge bin/vncedge --sessions 5000 --concurrency 1000",
				"bench token-sources --vncedge bin/vncedge --sources file,redis --direct --out tokens.json",
			},
		},
	}
}

// scenarioHelp prints a scenario's description, examples and flags.
func scenarioHelp(w io.Writer, scenario string, fs *flag.FlagSet) {
	d, ok := scenarioDocs()[scenario]
	if !ok {
		fmt.Fprintf(w, "usage: bench %s [flags]\n", scenario)
		fs.PrintDefaults()
		return
	}
	fmt.Fprintf(w, "usage: bench %s [flags]\n\n%s.\n\n%s\n\nExamples:\n", scenario, d.summary, d.about)
	for _, e := range d.examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintln(w, "\nRatios in the table: a/b is a's figure over b's; the better column says whether higher or\nlower figures (and ratios) are better. n/a: not measured. Exit status 1 when any session\nfailed or nothing was measured, 2 for bad flags.\n\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// scenarioNames lists the scenarios in usage order.
func scenarioNames() []string {
	names := make([]string, 0, 8)
	for n := range scenarioDocs() {
		names = append(names, n)
	}
	order := map[string]int{"throughput": 0, "latency": 1, "sessions": 2, "setup": 3, "churn": 4, "desktops": 5, "token-sources": 6}
	sort.Slice(names, func(i, j int) bool { return order[names[i]] < order[names[j]] })
	return names
}

// runHelp is `bench help [SCENARIO]`.
func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage())
		return 0
	}
	name := args[0]
	if _, ok := scenarioDocs()[name]; !ok {
		fmt.Fprintf(stderr, "bench help: no scenario %q (scenarios: %s)\n", name, strings.Join(scenarioNames(), ", "))
		return 2
	}
	if name == "token-sources" {
		_ = runTokenSources([]string{"-h"}, stdout, stdout)
	} else {
		_ = runScenario(name, []string{"-h"}, stdout, stdout)
	}
	return 0
}

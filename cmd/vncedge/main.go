// Command vncedge runs the WebSocket-to-VNC proxy: it turns flags and an
// optional config file into an engine.Config, runs the engine, and maps
// signals to a graceful drain (SIGTERM, SIGINT) or a reload (SIGHUP).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vncedge/engine"
	"vncedge/routing"
)

// version and commit are stamped at link time by the Makefile and the
// container build (-ldflags "-X main.version=... -X main.commit=..."); -X
// can only set package-level strings, so these two are the one exception to
// the project's no-mutable-globals rule, and nothing writes them at run time.
var (
	version string
	commit  string
)

func main() {
	// HELP and TYPE lines on /metrics, so Prometheus stores every series
	// with its type. The library has one switch for the whole process (it
	// also governs process_* and go_* metrics), so the program sets it once
	// here rather than each engine.Server, which may share a process with
	// other metric sets in tests and embeddings.
	metrics.ExposeMetadata(true)
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, signals))
}

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// shutdownGrace is how long Shutdown may take beyond the drain timeout to
// close what is left before we give up on a clean exit.
const shutdownGrace = 10 * time.Second

// run is the whole program, with its surroundings passed in so tests can
// drive it: args without the program name, and a channel of signals.
func run(args []string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	opts, err := parseConfig(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, helpText())
		return exitOK
	}
	if err != nil {
		return usageError(stderr, err)
	}
	if opts.version {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}

	logger := newLogger(stderr, opts)
	cfg, tokens, err := buildConfig(opts, logger)
	if err != nil {
		return usageError(stderr, err)
	}
	defer func() {
		if err := cfg.Router.Close(); err != nil {
			logger.Warn("closing token sources", "err", err)
		}
	}()
	// engine.New only checks and prepares (nothing listens yet), so its
	// errors are configuration errors too.
	srv, err := engine.New(cfg)
	if err != nil {
		return usageError(stderr, err)
	}
	if opts.check {
		fmt.Fprintln(stdout, "vncedge: configuration OK")
		return exitOK
	}

	ctx, cancel := context.WithCancel(context.Background())
	var watchers sync.WaitGroup
	defer func() {
		cancel()
		watchers.Wait()
	}()
	if tokens != nil && opts.tokenWatch > 0 {
		watchers.Go(func() { tokens.Watch(ctx, opts.tokenWatch, logger) })
	}

	logger.Info("vncedge starting", "version", versionString(), "config", opts.configFile,
		"allow", len(opts.allow), "token_file", opts.tokenFile)
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve() }()
	sv := supervisor{srv: srv, drain: cfg.DrainTimeout, dupWindow: duplicateSignalWindow, logger: logger}
	return sv.run(serveDone, signals)
}

// usageError reports a flag or configuration error and returns its exit code.
func usageError(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "vncedge: %v\nRun 'vncedge --help' for the flags and the config file format.\n", err)
	return exitUsage
}

// duplicateSignalWindow: a stop signal this soon after the first one is
// taken as the same request delivered twice, not an operator insisting.
// timeout(1), for one, signals both its child and the child's process group.
const duplicateSignalWindow = 500 * time.Millisecond

// server is what the supervisor needs from *engine.Server.
type server interface {
	Shutdown(ctx context.Context) error
	Reload() error
}

// supervisor maps signals to the server's Shutdown and Reload.
type supervisor struct {
	srv       server
	drain     time.Duration // the server's drain timeout, to bound Shutdown
	dupWindow time.Duration // see duplicateSignalWindow
	logger    *slog.Logger
}

// run waits for the server to stop or for signals, and returns the exit
// code. A stop signal starts a drain; a second one exits at once.
func (sv supervisor) run(serveDone <-chan error, signals <-chan os.Signal) int {
	srv, drain, logger := sv.srv, sv.drain, sv.logger
	var (
		drainStart   time.Time
		draining     bool
		shutdownDone chan error // nil until a drain begins, and after it reports
		grace        <-chan time.Time
		served, shut bool
		serveErr     error
		shutdownErr  error
	)
	for {
		if served && shut {
			return shutdownExit(shutdownErr, serveErr, logger)
		}
		select {
		case err := <-serveDone:
			served, serveErr, serveDone = true, err, nil
			if !draining {
				// Serve returned without being asked to: the listener failed.
				if err == nil {
					err = errors.New("server stopped without being asked to")
				}
				logger.Error("server failed", "err", err)
				return exitRuntime
			}
		case err := <-shutdownDone:
			shut, shutdownErr, shutdownDone = true, err, nil
			if !served {
				grace = time.After(shutdownGrace)
			}
		case <-grace:
			logger.Error("server did not stop after shutdown", "waited", shutdownGrace.String())
			return exitRuntime
		case sig := <-signals:
			switch {
			case isStop(sig) && draining && time.Since(drainStart) < sv.dupWindow:
				logger.Debug("duplicate stop signal ignored", "signal", sig.String())
			case isStop(sig) && draining:
				logger.Warn("second signal: exiting without waiting for the drain", "signal", sig.String())
				return exitRuntime
			case isStop(sig):
				logger.Info("stop signal: draining", "signal", sig.String(), "drain_timeout", drain.String())
				draining, drainStart = true, time.Now()
				shutdownDone = make(chan error, 1)
				go func(done chan<- error) {
					ctx, cancel := context.WithTimeout(context.Background(), drain+shutdownGrace)
					defer cancel()
					done <- srv.Shutdown(ctx)
				}(shutdownDone)
			case sig == syscall.SIGHUP && draining:
				logger.Info("reload ignored while draining")
			case sig == syscall.SIGHUP:
				if err := srv.Reload(); err != nil {
					logger.Error("reload failed; keeping the previous routing", "err", err)
				} else {
					logger.Info("reloaded")
				}
			default:
				logger.Debug("ignoring signal", "signal", sig.String())
			}
		}
	}
}

func isStop(sig os.Signal) bool { return sig == syscall.SIGTERM || sig == os.Interrupt }

// shutdownExit turns the results of Shutdown and Serve after a requested
// stop into an exit code.
func shutdownExit(shutdownErr, serveErr error, logger *slog.Logger) int {
	if shutdownErr != nil {
		logger.Error("drain did not finish cleanly", "err", shutdownErr)
		return exitRuntime
	}
	if serveErr != nil {
		logger.Error("server stopped with an error", "err", serveErr)
		return exitRuntime
	}
	logger.Info("stopped")
	return exitOK
}

// buildConfig adds what parseConfig cannot make by itself: the router (which
// reads the token file) and the logger.
func buildConfig(opts options, logger *slog.Logger) (engine.Config, *routing.TokenFile, error) {
	cfg := opts.engine
	cfg.Logger = logger
	cfg.Build = buildInfo()
	var sources []routing.Source
	var tokens *routing.TokenFile
	if opts.tokenFile != "" {
		tf, err := routing.NewTokenFile(opts.tokenFile)
		if err != nil {
			return cfg, nil, fmt.Errorf("--token-file: %w", err)
		}
		tokens = tf
		sources = append(sources, tf)
	}
	router, err := routing.New(routing.Config{
		Allow:     opts.allow,
		TokenPath: opts.tokenPath,
		Sources:   sources,
	})
	if err != nil {
		return cfg, nil, err
	}
	cfg.Router = router
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	return cfg, tokens, nil
}

func newLogger(w io.Writer, opts options) *slog.Logger {
	ho := &slog.HandlerOptions{Level: opts.logLevel}
	if opts.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// buildInfo names this binary: the version and commit stamped at link time,
// else what the Go toolchain recorded (a module version for `go install`,
// the VCS revision for a build inside a git checkout).
func buildInfo() engine.Build {
	b := engine.Build{Version: version, Commit: commit}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if b.Commit == "" {
		b.Commit = rev
	}
	if b.Version == "" {
		b.Version = info.Main.Version
		if (b.Version == "" || b.Version == "(devel)") && rev != "" {
			b.Version = rev[:min(12, len(rev))] + dirty
		}
	}
	return b
}

// versionString is what --version prints and the start-up log line
// carries: version, commit and Go toolchain, each always present.
func versionString() string {
	b := buildInfo()
	v, c := b.Version, b.Commit
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("vncedge %s (commit %s, %s)", v, c, runtime.Version())
}

// Command vncedge runs the WebSocket-to-VNC proxy: it turns flags and an
// optional config file into an engine.Config, runs the engine, and maps
// signals to a graceful drain (SIGTERM, SIGINT) or a reload (SIGHUP).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/go-redis/v9"

	"vncedge/engine"
	"vncedge/engine/tlsio"
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
	if len(args) > 0 && args[0] == "sessions" {
		return runSessions(args[1:], stdout, stderr)
	}
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
	cfg, srcs, err := buildConfig(opts, logger)
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
		srcs.check(logger)
		fmt.Fprintln(stdout, "vncedge: configuration OK")
		return exitOK
	}
	// Bind before anything else starts, so that an address another
	// vncedge holds is refused as the configuration mistake it is (exit 2:
	// systemd's RestartPreventExitStatus keeps a unit from retrying it). A
	// port another program holds stays a runtime failure (1), which a
	// restart may outlive.
	if err := srv.Listen(); err != nil {
		var inUse *engine.AddrInUseError
		if errors.As(err, &inUse) && inUse.Shared {
			return usageError(stderr, err)
		}
		logger.Error("server failed", "err", err)
		return exitRuntime
	}
	notifySocket := os.Getenv("NOTIFY_SOCKET")
	notify := func(state string) {
		if err := sdNotify(notifySocket, state); err != nil {
			logger.Warn("telling the service manager failed", "state", state, "err", err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var watchers sync.WaitGroup
	defer func() {
		cancel()
		watchers.Wait()
	}()
	// Revocation subscriptions (Redis) run until we stop.
	watchers.Go(func() { cfg.Router.Run(ctx) })
	// A change the watch sees reloads exactly as SIGHUP does, through the
	// supervisor: one code path, so the log lines and the reload metrics
	// (vncedge_reloads_total, vncedge_reload_errors_total) count both.
	reloads := make(chan struct{}, 1)
	if opts.tokenWatch > 0 {
		watchers.Go(func() { watchSources(ctx, cfg.Router, opts.tokenWatch, reloads) })
	}

	logger.Info("vncedge starting", "version", versionString(), "config", opts.configFile,
		"allow", len(opts.allow), "token_sources", strings.Join(srcs.names, ","), "token_file", opts.tokenFile,
		"takeover", opts.engine.Takeover)
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve() }()
	watchers.Go(func() {
		select {
		case <-srv.Ready():
			notify("READY=1\nSTATUS=serving")
		case <-ctx.Done():
		}
	})
	sv := supervisor{srv: srv, drain: cfg.DrainTimeout, dupWindow: duplicateSignalWindow, logger: logger, reloads: reloads,
		reread: rereadConfig(args, opts, logger), notify: notify}
	return sv.run(serveDone, signals)
}

// rereadConfig returns what SIGHUP applies from the config file: the
// command line is parsed again with it, so flags given there keep their
// values, and the live settings (engine.Live) of the result go to the
// engine. Changed settings that only a restart applies are named in the
// log and left as they run.
func rereadConfig(args []string, running options, logger *slog.Logger) func() (engine.Live, error) {
	return func() (engine.Live, error) {
		next, err := parseConfig(args)
		if err != nil {
			return engine.Live{}, err
		}
		if c := restartOnlyChanges(running, next); len(c) > 0 {
			logger.Warn("config changes that need a restart were not applied", "flags", strings.Join(c, ","))
		}
		return next.engine.Live(next.allow), nil
	}
}

// watchSources polls the token sources' files (cheap stats) and asks the
// supervisor for a reload when one changed. A request already pending
// covers this one.
func watchSources(ctx context.Context, r *routing.Router, every time.Duration, reloads chan<- struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if r.Changed() {
			select {
			case reloads <- struct{}{}:
			default:
			}
		}
	}
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
	ReloadWith(read func() (engine.Live, error)) error
}

// supervisor maps signals to the server's Shutdown and reloads.
type supervisor struct {
	srv       server
	drain     time.Duration // the server's drain timeout, to bound Shutdown
	dupWindow time.Duration // see duplicateSignalWindow
	logger    *slog.Logger
	reloads   <-chan struct{} // reloads asked for by --token-watch; nil for none
	// reread reads the config file again for SIGHUP (rereadConfig); nil
	// reloads the files only.
	reread func() (engine.Live, error)
	// notify tells the service manager (sdNotify); nil for none.
	notify func(state string)
}

// reload reloads the server and logs what happened: SIGHUP re-reads the
// config file too, a --token-watch change the files only. The token
// sources log the details themselves (which files were applied, which kept
// their previous contents and why); this line says whether all of it
// applied.
func (sv supervisor) reload(trigger string) {
	var read func() (engine.Live, error)
	if trigger == "SIGHUP" {
		read = sv.reread
	}
	if err := sv.srv.ReloadWith(read); err != nil {
		sv.logger.Error("reload incomplete: the parts named kept their previous contents, the rest was applied",
			"trigger", trigger, "err", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	sv.logger.Info("reloaded", "trigger", trigger)
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
		case <-sv.reloads:
			// While draining too: a drain after a takeover lasts as long as
			// its sessions, and a token removed from its file must still
			// end them here.
			sv.reload("token-watch")
		case sig := <-signals:
			switch {
			case isStop(sig) && draining && time.Since(drainStart) < sv.dupWindow:
				logger.Debug("duplicate stop signal ignored", "signal", sig.String())
			case isStop(sig) && draining:
				logger.Warn("second signal: exiting without waiting for the drain", "signal", sig.String())
				return exitRuntime
			case isStop(sig):
				logger.Info("stop signal: draining", "signal", sig.String(), "drain_timeout", drain.String())
				if sv.notify != nil {
					sv.notify("STOPPING=1\nSTATUS=draining: sessions stay until they end or the drain timeout")
				}
				draining, drainStart = true, time.Now()
				shutdownDone = make(chan error, 1)
				go func(done chan<- error) {
					ctx, cancel := context.WithTimeout(context.Background(), drain+shutdownGrace)
					defer cancel()
					done <- srv.Shutdown(ctx)
				}(shutdownDone)
			case sig == syscall.SIGHUP:
				sv.reload("SIGHUP")
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

// builtSources is what buildConfig made besides the engine config, for
// --check and the start-up log.
type builtSources struct {
	names []string // in lookup order
	redis *routing.RedisSource
}

// check reports what --check can know about the sources beyond their
// configuration: Redis may be down now and come up later, so that is a
// warning, not a failure.
func (b builtSources) check(logger *slog.Logger) {
	if b.redis == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.redis.Ping(ctx); err != nil {
		logger.Warn("--token-redis is not reachable now; vncedge would start anyway and retry",
			"redis", b.redis.Where(), "err", err)
	}
}

// buildConfig adds what parseConfig cannot make by itself: the router, with
// its token sources in the documented order (token file, signed tokens,
// Redis, HTTP lookup: the ones that never block first), and the logger.
func buildConfig(opts options, logger *slog.Logger) (engine.Config, builtSources, error) {
	cfg := opts.engine
	cfg.Logger = logger
	cfg.Build = buildInfo()
	var built builtSources
	if err := tlsPairs(&cfg, opts); err != nil {
		return cfg, built, err
	}
	if err := recordDirs(&cfg, opts); err != nil {
		return cfg, built, err
	}
	if err := checkSourceFlags(opts); err != nil {
		return cfg, built, err
	}
	var sources []routing.TokenSource
	closeAll := func() {
		for _, s := range sources {
			if c, ok := s.(interface{ Close() error }); ok {
				_ = c.Close()
			}
		}
	}
	add := func(s routing.TokenSource) {
		sources = append(sources, s)
		built.names = append(built.names, s.Name())
	}
	if opts.tokenFile != "" {
		tf, err := routing.NewTokenFile(opts.tokenFile)
		if err != nil {
			return cfg, built, fmt.Errorf("--token-file: %w", err)
		}
		for _, w := range tf.LastReload().Warnings() {
			logger.Warn("token file", "warning", w)
		}
		add(tf)
	}
	if opts.tokenJWTKey != "" {
		j, err := routing.NewJWTSource(routing.JWTConfig{KeyFile: opts.tokenJWTKey, KeyFormat: opts.tokenJWTKeyFormat,
			Leeway: opts.tokenJWTLeeway})
		if err != nil {
			return cfg, built, fmt.Errorf("--token-jwt-key: %w", err)
		}
		add(j)
	}
	var claims routing.ClaimStore
	if opts.tokenRedis != "" {
		// go-redis logs pool trouble on its own; it goes to our log, at
		// debug, since every failed lookup already says what happened.
		redis.SetLogger(redisLogger{logger})
		rs, err := routing.NewRedisSource(routing.RedisConfig{URL: opts.tokenRedis, Prefix: opts.tokenRedisPrefix,
			RevokeChannel: opts.tokenRedisRevoke, SingleUse: opts.tokenSingleUse, Logger: logger})
		if err != nil {
			closeAll()
			return cfg, built, fmt.Errorf("--token-redis: %w", err)
		}
		add(rs)
		built.redis, claims = rs, rs.Claims()
	}
	if opts.tokenHTTP != "" {
		hs, err := routing.NewHTTPSource(routing.HTTPConfig{URL: opts.tokenHTTP, HeaderFile: opts.tokenHTTPHeaderFile})
		if err != nil {
			closeAll()
			return cfg, built, fmt.Errorf("--token-http: %w", err)
		}
		add(hs)
	}
	timeout := opts.tokenTimeout
	if timeout == 0 {
		timeout = -1 // 0 turns the per-lookup bound off; the engine's setup deadline still holds
	}
	router, err := routing.New(routing.Config{
		Allow:         opts.allow,
		TokenPath:     opts.tokenPath,
		TokenCookie:   opts.tokenCookie,
		Sources:       sources,
		UnixDirs:      opts.allowUnix,
		LookupTimeout: timeout,
		CacheTTL:      opts.tokenCacheTTL,
		CacheSize:     opts.tokenCacheSize,
		SingleUse:     opts.tokenSingleUse,
		Claims:        claims,
		Logger:        logger,
	})
	if err != nil {
		closeAll()
		return cfg, built, err
	}
	cfg.Router = router
	if err := cfg.Validate(); err != nil {
		_ = router.Close()
		return cfg, built, err
	}
	return cfg, built, nil
}

// checkSourceFlags refuses settings that would silently do nothing.
func checkSourceFlags(opts options) error {
	d := defaultOptions()
	switch {
	case opts.tokenRedis == "" && opts.tokenRedisPrefix != "":
		return errors.New("--token-redis-prefix needs --token-redis")
	case opts.tokenRedis == "" && opts.tokenRedisRevoke != d.tokenRedisRevoke:
		return errors.New("--token-redis-revoke-channel needs --token-redis")
	case opts.tokenRedis != "" && opts.tokenRedisRevoke == "":
		return errors.New("--token-redis-revoke-channel must name a channel")
	case opts.tokenHTTP == "" && opts.tokenHTTPHeaderFile != "":
		return errors.New("--token-http-header-file needs --token-http")
	case opts.tokenJWTKey == "" && opts.tokenJWTKeyFormat != d.tokenJWTKeyFormat:
		return errors.New("--token-jwt-key-format needs --token-jwt-key")
	case opts.tokenJWTKey == "" && opts.tokenJWTLeeway != 0:
		return errors.New("--token-jwt-leeway needs --token-jwt-key")
	case opts.tokenCacheTTL > 0 && opts.tokenCacheSize == 0:
		return errors.New("--token-cache-size must be at least 1 (--token-cache-ttl 0 turns the cache off)")
	}
	return nil
}

// redisLogger hands go-redis' log lines to slog.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Debug("redis client", "detail", fmt.Sprintf(format, v...))
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

// tlsPairs pairs --tls-cert and --tls-key by order: the first certificate
// with the first key, and so on; the first pair is the default when no SNI
// name matches.
func tlsPairs(cfg *engine.Config, opts options) error {
	if len(opts.tlsCerts) != len(opts.tlsKeys) {
		return fmt.Errorf("--tls-cert given %d times and --tls-key %d times: each certificate needs its key, in the same order",
			len(opts.tlsCerts), len(opts.tlsKeys))
	}
	cfg.TLS.Certs = nil
	for i := range opts.tlsCerts {
		cfg.TLS.Certs = append(cfg.TLS.Certs, tlsio.CertPair{Cert: opts.tlsCerts[i], Key: opts.tlsKeys[i]})
	}
	if opts.tlsMinVersion == "1.3" {
		cfg.TLS.MinVersion = tls.VersionTLS13
	}
	if len(cfg.TLS.Certs) > 0 && cfg.TLSListen == "" {
		return errors.New("--tls-cert without --tls-listen: say where to serve TLS (e.g. --tls-listen 0.0.0.0:6443)")
	}
	return nil
}

// recordDirs turns --record and --record-dir into the engine's settings.
func recordDirs(cfg *engine.Config, opts options) error {
	switch {
	case opts.record != "" && opts.recordDir != "" && opts.record != opts.recordDir:
		return errors.New("--record and --record-dir name different directories: --record DIR alone records every session into DIR")
	case opts.record != "":
		cfg.RecordAll, cfg.RecordDir = true, opts.record
	case opts.recordDir != "":
		cfg.RecordDir = opts.recordDir
	}
	if (cfg.RecordInput || cfg.RecordRequired) && cfg.RecordDir == "" {
		return errors.New("--record-input and --record-required need --record DIR or --record-dir DIR")
	}
	return nil
}

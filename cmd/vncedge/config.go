package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"vncedge/engine"
	"vncedge/routing"
)

// errHelp asks run to print the help text and exit 0.
var errHelp = errors.New("help requested")

// options is everything the command line and the config file can set.
type options struct {
	// engine holds the listener, timeout and limit settings. Router and
	// Logger stay nil here: run builds them from the fields below.
	engine engine.Config

	allow      []string
	tokenFile  string
	tokenPath  string
	tokenWatch time.Duration

	// Token sources beside the file, and how lookups behave (routing.Config).
	tokenCookie         string
	tokenTimeout        time.Duration
	tokenCacheTTL       time.Duration
	tokenCacheSize      int
	tokenRedis          string
	tokenRedisPrefix    string
	tokenRedisRevoke    string
	tokenJWTKey         string
	tokenJWTKeyFormat   string
	tokenJWTLeeway      time.Duration
	tokenHTTP           string
	tokenHTTPHeaderFile string
	tokenSingleUse      bool
	allowUnix           []string

	// Recording: --record DIR records every session there; --record-dir
	// is where grants that say record go without --record.
	record, recordDir string

	// TLS (--tls-cert and --tls-key pair up by order into engine.TLS.Certs).
	tlsCerts, tlsKeys []string
	tlsMinVersion     string

	configFile string
	logLevel   slog.Level
	logFormat  string
	version    bool
	check      bool
}

func defaultOptions() options {
	return options{
		engine:        engine.DefaultConfig(),
		tokenPath:     "/websockify",
		tokenWatch:    2 * time.Second,
		tlsMinVersion: "1.2",
		logLevel:      slog.LevelInfo,
		logFormat:     "text",

		tokenTimeout:      2 * time.Second,
		tokenCacheTTL:     2 * time.Second,
		tokenCacheSize:    10000,
		tokenRedisRevoke:  routing.DefaultRevokeChannel,
		tokenJWTKeyFormat: routing.JWTKeyStandard,
	}
}

// parseConfig turns the command line (without the program name) and the
// config file it names into options. Precedence, lowest first: built-in
// defaults, the config file, flags given on the command line. A repeatable
// flag on the command line replaces the file's list instead of adding to it,
// so an operator can always see the whole list in one place.
func parseConfig(args []string) (options, error) {
	// First pass: only to learn --config and to report command-line mistakes
	// before the file is read.
	probe := defaultOptions()
	if err := parseArgs(newFlagSet(&probe), args); err != nil {
		return options{}, err
	}

	o := defaultOptions()
	fs := newFlagSet(&o)
	if probe.configFile != "" {
		if err := applyConfigFile(fs, probe.configFile); err != nil {
			return options{}, err
		}
		fs.VisitAll(func(f *flag.Flag) {
			if l, ok := f.Value.(*listValue); ok {
				l.replace = true
			}
		})
	}
	if err := parseArgs(fs, args); err != nil {
		return options{}, err
	}
	o.configFile = probe.configFile
	return o, nil
}

func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errors.New(dashDash(err.Error()))
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (vncedge takes only flags)", fs.Arg(0))
	}
	return nil
}

// dashDash rewrites the flag package's "-name" in its messages to the
// "--name" spelling that the help text and the docs use.
func dashDash(msg string) string {
	for _, before := range []string{"flag -", "for -", "defined: -", "argument: -"} {
		msg = strings.Replace(msg, before, before+"-", 1)
	}
	return strings.Replace(msg, "flag provided but not defined:", "unknown flag", 1)
}

// newFlagSet binds every option to o. The help text is written by hand in
// help.go; a test checks that it names every flag defined here.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("vncedge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	e := &o.engine

	fs.StringVar(&e.Listen, "listen", e.Listen, "")
	fs.BoolVar(&e.Takeover, "takeover", e.Takeover, "")
	fs.StringVar(&e.Admin, "admin", e.Admin, "")
	fs.StringVar(&e.AdminTokenFile, "admin-token-file", e.AdminTokenFile, "")
	fs.Var(countValue{&e.Loops}, "loops", "")
	fs.StringVar(&e.WebDir, "web", e.WebDir, "")
	fs.BoolVar(&e.Pprof, "pprof", e.Pprof, "")

	fs.Var(&listValue{p: &o.allow}, "allow", "")
	fs.Var(&listValue{p: &e.Origins}, "origin", "")
	fs.Var(&listValue{p: &e.TrustedProxies}, "trusted-proxy", "")
	fs.BoolVar(&e.ProxyProtocol, "proxy-protocol", e.ProxyProtocol, "")
	fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, "")
	fs.Var(pathValue{&o.tokenPath}, "token-path", "")
	fs.Var(durationValue{&o.tokenWatch}, "token-watch", "")
	fs.StringVar(&o.tokenCookie, "token-cookie", o.tokenCookie, "")
	fs.Var(durationValue{&o.tokenTimeout}, "token-timeout", "")
	fs.Var(durationValue{&o.tokenCacheTTL}, "token-cache-ttl", "")
	fs.Var(countValue{&o.tokenCacheSize}, "token-cache-size", "")
	fs.StringVar(&o.tokenRedis, "token-redis", o.tokenRedis, "")
	fs.StringVar(&o.tokenRedisPrefix, "token-redis-prefix", o.tokenRedisPrefix, "")
	fs.StringVar(&o.tokenRedisRevoke, "token-redis-revoke-channel", o.tokenRedisRevoke, "")
	fs.StringVar(&o.tokenJWTKey, "token-jwt-key", o.tokenJWTKey, "")
	fs.Var(choiceValue{&o.tokenJWTKeyFormat, []string{routing.JWTKeyStandard, routing.JWTKeyWebsockify}}, "token-jwt-key-format", "")
	fs.Var(durationValue{&o.tokenJWTLeeway}, "token-jwt-leeway", "")
	fs.StringVar(&o.tokenHTTP, "token-http", o.tokenHTTP, "")
	fs.StringVar(&o.tokenHTTPHeaderFile, "token-http-header-file", o.tokenHTTPHeaderFile, "")
	fs.BoolVar(&o.tokenSingleUse, "token-single-use", o.tokenSingleUse, "")
	fs.BoolVar(&e.TokenExpiryCloses, "token-expiry-closes", e.TokenExpiryCloses, "")
	fs.Var(&listValue{p: &o.allowUnix}, "allow-unix", "")

	fs.Var(durationValue{&e.HandshakeTimeout}, "handshake-timeout", "")
	fs.Var(durationValue{&e.ConnectTimeout}, "connect-timeout", "")
	fs.Var(durationValue{&e.IdleTimeout}, "idle-timeout", "")
	fs.Var(durationValue{&e.PingInterval}, "ping-interval", "")
	fs.Var(durationValue{&e.PongTimeout}, "pong-timeout", "")
	fs.Var(durationValue{&e.DrainTimeout}, "drain-timeout", "")

	fs.Var(countValue{&e.MaxSessions}, "max-sessions", "")
	fs.Var(countValue{&e.MaxSessionsPerVM}, "max-sessions-per-upstream", "")
	fs.Var(sizeValue[int64]{&e.MaxFrame}, "max-frame", "")
	fs.Var(sizeValue[int]{&e.MaxBuffered}, "max-buffered", "")
	fs.Var(countValue{&e.MaxSessionsPerIP}, "max-sessions-per-ip", "")
	fs.Var(rateValue{&e.UpgradeRate, &e.UpgradeBurst}, "max-upgrades-per-ip", "")
	fs.Var(countValue{&e.MaxHandshakes}, "max-handshakes", "")
	fs.Var(countValue{&e.MaxHandshakesPerIP}, "max-handshakes-per-ip", "")
	fs.Var(sizeValue[int64]{&e.MemoryBudget}, "memory-budget", "")
	fs.Var(countValue{&e.FDReserve}, "fd-reserve", "")
	fs.Var(countValue{&e.MaxAdminConns}, "max-admin-conns", "")

	fs.StringVar(&e.TLSListen, "tls-listen", e.TLSListen, "")
	fs.Var(&listValue{p: &o.tlsCerts}, "tls-cert", "")
	fs.Var(&listValue{p: &o.tlsKeys}, "tls-key", "")
	fs.StringVar(&e.TLS.ClientCA, "tls-client-ca", e.TLS.ClientCA, "")
	fs.Var(&listValue{p: &e.TLS.ClientCNs}, "tls-client-cn", "")
	fs.Var(choiceValue{&o.tlsMinVersion, []string{"1.2", "1.3"}}, "tls-min-version", "")
	fs.Var(countValue{&e.TLS.HandshakeWorkers}, "tls-handshake-workers", "")
	fs.StringVar(&e.TLS.UpstreamCA, "upstream-ca", e.TLS.UpstreamCA, "")
	fs.BoolVar(&e.TLS.UpstreamInsecureSkipVerify, "upstream-tls-insecure-skip-verify", e.TLS.UpstreamInsecureSkipVerify, "")

	fs.BoolVar(&e.RFBErrors, "rfb-errors", e.RFBErrors, "")
	fs.StringVar(&e.VNCPasswordFile, "vnc-password-file", e.VNCPasswordFile, "")
	fs.BoolVar(&e.ViewOnly, "view-only", e.ViewOnly, "")
	fs.BoolVar(&e.VMVeNCrypt, "vm-vencrypt", e.VMVeNCrypt, "")
	fs.StringVar(&o.record, "record", o.record, "")
	fs.StringVar(&o.recordDir, "record-dir", o.recordDir, "")
	fs.BoolVar(&e.RecordInput, "record-input", e.RecordInput, "")
	fs.BoolVar(&e.RecordRequired, "record-required", e.RecordRequired, "")
	fs.Var(sizeValue[int]{&e.RecordQueueBytes}, "record-queue", "")

	fs.Var(levelValue{&o.logLevel}, "log-level", "")
	fs.Var(choiceValue{&o.logFormat, []string{"text", "json"}}, "log-format", "")

	fs.StringVar(&o.configFile, "config", o.configFile, "")
	fs.BoolVar(&o.version, "version", o.version, "")
	fs.BoolVar(&o.check, "check", o.check, "")
	return fs
}

// refusedInFile says why a flag cannot be set from a config file, or "".
func refusedInFile(name string) string {
	switch name {
	case "config":
		return "a config file cannot name another config file"
	case "version", "check":
		return "--" + name + " belongs on the command line"
	case "takeover":
		// In a file it would make every start share the port of whatever
		// vncedge runs, which is the mistake the check at start is for.
		return "--takeover belongs on the command line of the one start that takes over"
	}
	return ""
}

// isLiveFlag reports the flags whose new values a reload (SIGHUP)
// applies: engine.Live.
func isLiveFlag(name string) bool {
	switch name {
	case "allow", "origin", "trusted-proxy", "max-sessions", "max-sessions-per-upstream", "max-sessions-per-ip",
		"max-upgrades-per-ip", "max-handshakes", "max-handshakes-per-ip":
		return true
	}
	return false
}

// restartOnlyChanges names the flags whose values differ between the
// running options and those read again, and that a reload cannot apply.
func restartOnlyChanges(running, next options) []string {
	a, b := newFlagSet(&running), newFlagSet(&next)
	var out []string
	a.VisitAll(func(f *flag.Flag) {
		if isLiveFlag(f.Name) || f.Name == "config" || f.Name == "check" || f.Name == "version" {
			return
		}
		if g := b.Lookup(f.Name); g != nil && g.Value.String() != f.Value.String() {
			out = append(out, f.Name)
		}
	})
	return out
}

// applyConfigFile reads a YAML mapping whose keys are flag names and sets
// each flag through fs, so the file accepts exactly what the command line
// accepts and reports errors the same way, plus the line.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := applyConfigYAML(fs, data); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// applyConfigYAML is the parser behind applyConfigFile, kept apart so the
// fuzz target needs no files.
func applyConfigYAML(fs *flag.FlagSet, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("not valid YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document; put every setting in one mapping")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	root = resolveAlias(root)
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil // a file of only comments
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the top level must be a mapping of flag names to values (listen: 0.0.0.0:6080)", root.Line)
	}

	seen := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := resolveAlias(root.Content[i]), resolveAlias(root.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: a key must be a flag name, not a list or mapping", k.Line)
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			return fmt.Errorf("line %d: key %q already set on line %d", k.Line, name, first)
		}
		seen[name] = k.Line
		if why := refusedInFile(name); why != "" {
			return fmt.Errorf("line %d: key %q: %s", k.Line, name, why)
		}
		f := fs.Lookup(name)
		if f == nil {
			msg := fmt.Sprintf("line %d: unknown key %q", k.Line, name)
			if alt := strings.ReplaceAll(name, "_", "-"); alt != name && fs.Lookup(alt) != nil {
				msg += fmt.Sprintf(" (did you mean %q?)", alt)
			}
			return errors.New(msg + "; keys are the flag names listed by --help")
		}
		if line, err := applyValue(fs, f, v); err != nil {
			return fmt.Errorf("line %d: key %q: %w", line, name, err)
		}
	}
	return nil
}

// applyValue sets flag f from node v; on error it also returns the line of
// the offending node (a list item's own line).
func applyValue(fs *flag.FlagSet, f *flag.Flag, v *yaml.Node) (int, error) {
	list, isList := f.Value.(*listValue)
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			if isList {
				return v.Line, errors.New(`no value; write [] for an empty list`)
			}
			return v.Line, errors.New(`no value; write "" for an empty string`)
		}
		if err := fs.Set(f.Name, v.Value); err != nil {
			return v.Line, fmt.Errorf("%q: %w", v.Value, err)
		}
		return 0, nil
	case yaml.SequenceNode:
		if !isList {
			return v.Line, errors.New("takes one value, not a list")
		}
		*list.p = nil // the file states the whole list, even when empty
		for _, item := range v.Content {
			item = resolveAlias(item)
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
				return item.Line, errors.New("list items must be plain values")
			}
			if err := fs.Set(f.Name, item.Value); err != nil {
				return item.Line, fmt.Errorf("%q: %w", item.Value, err)
			}
		}
		return 0, nil
	default:
		return v.Line, errors.New("takes a plain value, not a mapping")
	}
}

// resolveAlias follows a YAML alias (*name) to its anchored node. An anchor
// can never point at another alias, so one step is enough.
func resolveAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// listValue is a repeatable flag.
type listValue struct {
	p *[]string
	// replace makes the next Set start a new list: set after the config file
	// was applied, so the command line replaces the file's list.
	replace bool
}

func (l *listValue) String() string {
	if l == nil || l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l *listValue) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty value")
	}
	if l.replace {
		*l.p, l.replace = nil, false
	}
	*l.p = append(*l.p, s)
	return nil
}

// durationValue is a Go duration that must not be negative; 0 means off.
type durationValue struct{ p *time.Duration }

func (d durationValue) String() string {
	if d.p == nil {
		return ""
	}
	return formatDuration(*d.p)
}

func (d durationValue) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		// A bare number is the most common slip; say what is missing.
		if _, nerr := strconv.ParseFloat(strings.TrimSpace(s), 64); nerr == nil && strings.TrimSpace(s) != "0" {
			return errors.New("no unit; write a duration like 10s, 500ms or 1m (0 turns it off)")
		}
		return errors.New("not a duration; write one like 10s, 500ms or 1m (0 turns it off)")
	}
	if v < 0 {
		return errors.New("negative; use 0 to turn it off")
	}
	*d.p = v
	return nil
}

// countValue is a non-negative integer; 0 means off (or "one per CPU" for --loops).
type countValue struct{ p *int }

func (c countValue) String() string {
	if c.p == nil {
		return ""
	}
	return strconv.Itoa(*c.p)
}

func (c countValue) Set(s string) error {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 0)
	if err != nil {
		return errors.New("not a whole number")
	}
	if v < 0 {
		return errors.New("negative; use 0 to turn it off")
	}
	*c.p = int(v)
	return nil
}

// rateValue is a token bucket: "N/s", "N/m" or "N/h", optionally ":BURST"
// (the bucket's size, default N or 1); "0" turns it off.
type rateValue struct {
	perSecond *float64
	burst     *int
}

func (r rateValue) String() string {
	if r.perSecond == nil || *r.perSecond == 0 {
		return "0"
	}
	return formatRate(*r.perSecond, *r.burst)
}

// formatRate writes a rate the way rateValue reads it.
func formatRate(perSecond float64, burst int) string {
	n, unit := perSecond, "s"
	if n < 1 {
		n, unit = perSecond*60, "m"
	}
	if n < 1 {
		n, unit = perSecond*3600, "h"
	}
	return strconv.FormatFloat(n, 'f', -1, 64) + "/" + unit + ":" + strconv.Itoa(burst)
}

func (r rateValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "0" {
		*r.perSecond, *r.burst = 0, 0
		return nil
	}
	spec, burstText, hasBurst := strings.Cut(s, ":")
	num, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return errors.New(`want N/s, N/m or N/h, optionally :BURST, e.g. "5/s:20"; 0 turns it off`)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return errors.New("the rate must be a positive number")
	}
	per := map[string]float64{"s": 1, "m": 60, "h": 3600}[unit]
	if per == 0 {
		return fmt.Errorf("unit %q: want s, m or h", unit)
	}
	burst := max(int(math.Ceil(n)), 1)
	if hasBurst {
		b, err := strconv.Atoi(burstText)
		if err != nil || b < 1 {
			return errors.New("the burst must be a whole number of at least 1")
		}
		burst = b
	}
	*r.perSecond, *r.burst = n/per, burst
	return nil
}

// sizeValue is a byte count: a plain number or one with a binary unit.
type sizeValue[T int | int64] struct{ p *T }

func (z sizeValue[T]) String() string {
	if z.p == nil {
		return ""
	}
	return formatSize(int64(*z.p))
}

func (z sizeValue[T]) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	if int64(T(v)) != v {
		return errors.New("too large for this platform")
	}
	*z.p = T(v)
	return nil
}

// parseSize reads "16777216", "16M", "16MiB", "16MB", "512k". Every unit is
// binary (K = 1024) whatever its spelling: operators write "16M" for the
// same buffer size they would write "16MiB" for, as in nginx and HAProxy,
// and a size that differs by 5% depending on one letter helps nobody.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		if strings.HasPrefix(t, "-") {
			return 0, errors.New("negative; use 0 to turn it off")
		}
		return 0, errors.New("not a size; write bytes (1048576) or a number with a unit: 512K, 16M, 16MiB, 1G")
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, errors.New("too large")
	}
	unit := strings.ToUpper(strings.TrimSpace(t[i:]))
	shift, ok := sizeUnitShift(unit)
	if !ok {
		return 0, fmt.Errorf("unknown unit %q; use B, K, M, G or T (binary: 16M = 16MiB = 16777216)", t[i:])
	}
	if n > math.MaxInt64>>shift {
		return 0, errors.New("too large")
	}
	return n << shift, nil
}

// sizeUnitShift maps an upper-case unit to its power of two.
func sizeUnitShift(unit string) (uint, bool) {
	switch unit {
	case "", "B":
		return 0, true
	case "K", "KB", "KIB":
		return 10, true
	case "M", "MB", "MIB":
		return 20, true
	case "G", "GB", "GIB":
		return 30, true
	case "T", "TB", "TIB":
		return 40, true
	}
	return 0, false
}

// formatSize prints n with the largest binary unit that divides it exactly.
func formatSize(n int64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// formatDuration prints 1m instead of time.Duration's 1m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// pathValue is a URL path; it must start with a slash.
type pathValue struct{ p *string }

func (v pathValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v pathValue) Set(s string) error {
	if !strings.HasPrefix(s, "/") {
		return errors.New("must start with /")
	}
	*v.p = s
	return nil
}

// choiceValue is one of a fixed set of words.
type choiceValue struct {
	p       *string
	choices []string
}

func (c choiceValue) String() string {
	if c.p == nil {
		return ""
	}
	return *c.p
}

func (c choiceValue) Set(s string) error {
	for _, ch := range c.choices {
		if s == ch {
			*c.p = s
			return nil
		}
	}
	return fmt.Errorf("want one of: %s", strings.Join(c.choices, ", "))
}

// levelValue is a slog level by name (debug, info, warn, error).
type levelValue struct{ p *slog.Level }

func (l levelValue) String() string {
	if l.p == nil {
		return ""
	}
	return strings.ToLower(l.p.String())
}

func (l levelValue) Set(s string) error {
	if err := l.p.UnmarshalText([]byte(s)); err != nil {
		return errors.New("want debug, info, warn or error")
	}
	return nil
}

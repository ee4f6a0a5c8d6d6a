package engine

import (
	"errors"
	"net/netip"
	"slices"
	"strings"

	"vncedge/routing"
)

// Live is the part of the configuration a running server changes on
// ReloadWith (SIGHUP): who may connect, from where, to what, and how many.
// Everything else needs a restart (docs/reference.md lists it). These are
// read when a connection is accepted or an upgrade is checked, never per
// message, so a reload costs the relay nothing; sessions already open keep
// running under the values they opened with, and a limit lowered below
// what is in use refuses new sessions until use falls below it.
type Live struct {
	Allow          []string // --allow, routing's allow-list
	Origins        []string // --origin
	TrustedProxies []string // --trusted-proxy

	MaxSessions        int     // --max-sessions
	MaxSessionsPerVM   int     // --max-sessions-per-upstream
	MaxSessionsPerIP   int     // --max-sessions-per-ip
	UpgradeRate        float64 // --max-upgrades-per-ip: upgrades per second
	UpgradeBurst       int     // and the bucket's size
	MaxHandshakes      int     // --max-handshakes
	MaxHandshakesPerIP int     // --max-handshakes-per-ip
}

// Live returns c's live settings, with allow as the allow-list (which
// lives in routing.Config, not here).
func (c *Config) Live(allow []string) Live {
	return Live{
		Allow:              slices.Clone(allow),
		Origins:            slices.Clone(c.Origins),
		TrustedProxies:     slices.Clone(c.TrustedProxies),
		MaxSessions:        c.MaxSessions,
		MaxSessionsPerVM:   c.MaxSessionsPerVM,
		MaxSessionsPerIP:   c.MaxSessionsPerIP,
		UpgradeRate:        c.UpgradeRate,
		UpgradeBurst:       c.UpgradeBurst,
		MaxHandshakes:      c.MaxHandshakes,
		MaxHandshakesPerIP: c.MaxHandshakesPerIP,
	}
}

// liveState is the live settings in force, parsed. It is swapped whole
// (Server.live), never edited, so one load sees one consistent set.
type liveState struct {
	Live
	origins originPolicy
	proxies trustedProxies
}

// compileLive checks every value of l and parses what needs parsing; on
// any error nothing of l may apply.
func compileLive(l Live, proxyProtocol bool) (*liveState, error) {
	var errs []error
	origins, err := newOriginPolicy(l.Origins)
	if err != nil {
		errs = append(errs, err)
	}
	proxies, err := newTrustedProxies(l.TrustedProxies)
	if err != nil {
		errs = append(errs, err)
	}
	if _, err := routing.ParseAllowList(l.Allow); err != nil {
		errs = append(errs, err)
	}
	if proxyProtocol && len(l.TrustedProxies) == 0 {
		errs = append(errs, errors.New("proxy-protocol needs trusted-proxy: a PROXY header from anyone would let clients forge their address"))
	}
	if l.MaxSessions < 0 || l.MaxSessionsPerVM < 0 || l.MaxSessionsPerIP < 0 || l.UpgradeRate < 0 ||
		l.UpgradeBurst < 0 || l.MaxHandshakes < 0 || l.MaxHandshakesPerIP < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &liveState{Live: l, origins: origins, proxies: proxies}, nil
}

// current is the live settings in force.
func (s *Server) current() *liveState { return s.live.Load() }

// applyLive makes l the live settings, whole, or returns why not and keeps
// those in force. It names what changed in the log.
func (s *Server) applyLive(l Live) error {
	next, err := compileLive(l, s.cfg.ProxyProtocol)
	if err != nil {
		return err
	}
	prev := s.current()
	if err := s.router.SetAllow(l.Allow); err != nil { // parsed above: cannot fail
		return err
	}
	s.live.Store(next)
	s.limits.setMax(l.MaxSessions, l.MaxSessionsPerVM)
	s.clients.setLimits(l.MaxSessionsPerIP, l.MaxHandshakesPerIP, l.UpgradeRate, l.UpgradeBurst)
	s.maxHandshakes.Store(int64(l.MaxHandshakes))
	changed := liveChanges(prev.Live, l)
	if len(changed) == 0 {
		return nil
	}
	s.log.Info("settings applied", "changed", strings.Join(changed, ","),
		"allow", len(l.Allow), "origins", len(l.Origins), "trusted_proxies", len(l.TrustedProxies))
	if len(prev.Allow) > 0 && len(l.Allow) == 0 {
		s.log.Warn("the allow-list is empty now: path routes reach nothing, and token targets are no longer limited by network")
	}
	return nil
}

// liveChanges names, by flag, the settings that differ between a and b.
func liveChanges(a, b Live) []string {
	var out []string
	add := func(name string, differs bool) {
		if differs {
			out = append(out, name)
		}
	}
	add("allow", !slices.Equal(a.Allow, b.Allow))
	add("origin", !slices.Equal(a.Origins, b.Origins))
	add("trusted-proxy", !slices.Equal(a.TrustedProxies, b.TrustedProxies))
	add("max-sessions", a.MaxSessions != b.MaxSessions)
	add("max-sessions-per-upstream", a.MaxSessionsPerVM != b.MaxSessionsPerVM)
	add("max-sessions-per-ip", a.MaxSessionsPerIP != b.MaxSessionsPerIP)
	add("max-upgrades-per-ip", a.UpgradeRate != b.UpgradeRate || a.UpgradeBurst != b.UpgradeBurst)
	add("max-handshakes", a.MaxHandshakes != b.MaxHandshakes)
	add("max-handshakes-per-ip", a.MaxHandshakesPerIP != b.MaxHandshakesPerIP)
	return out
}

// proxySet reads the trusted proxies in force: every caller asks through
// it, so a reload reaches the accept path, the PROXY header check and the
// X-Forwarded-For walk at once.
type proxySet struct{ s *Server }

func (p proxySet) contains(a netip.Addr) bool { return p.s.current().proxies.contains(a) }

func (p proxySet) any() bool { return len(p.s.current().proxies) > 0 }

func (p proxySet) clientAddr(remote, xff string) string {
	return p.s.current().proxies.clientAddr(remote, xff)
}

// Package tokensrc stands up every token source vncedge reads, for the setup-rate
// comparison of issue 11: a token file, a real redis-server on a free loopback port with
// the keys loaded, an HS256 key file for signed tokens, and a small HTTP lookup service on
// loopback. Each Source knows the vncedge flags that point at it and the token scheme its
// clients use, so one run opens sessions through each in turn.
package tokensrc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"vncedge/bench/child"
	"vncedge/bench/load"
)

// Names of the sources, in the order a run measures them (the token file first: the others
// are compared with it).
const (
	File  = "file"
	Redis = "redis"
	JWT   = "jwt"
	HTTP  = "http"
)

// Names lists every source in measuring order.
func Names() []string { return []string{File, Redis, JWT, HTTP} }

// Fleet is what tokens must name: session j of worker w reaches VM j % vms of worker w.
type Fleet struct {
	Workers  int
	Sessions int // per worker
	VMs      int // per worker
	Layout   load.Layout
}

// tokens lists every per-session token and its target.
func (f Fleet) tokens(yield func(token, target string) error) error {
	for w := 0; w < f.Workers; w++ {
		for j := 0; j < f.Sessions; j++ {
			vm := f.Layout.VM(w, j%f.VMs)
			if err := yield(load.SessionToken(w, j), net.JoinHostPort(vm.IP, strconv.Itoa(vm.Port))); err != nil {
				return err
			}
		}
	}
	return nil
}

// Source is one token source, ready for a proxy.
type Source struct {
	Name string
	// Flags point vncedge at the source.
	Flags []string
	// Token is the scheme of the clients' {token} (load.TokenSession or load.TokenJWT).
	Token string
	// Secret signs JWT tokens.
	Secret []byte
	stop   func() error
}

// Stop ends what the source runs (redis-server, the lookup service); an error means it had
// failed during the run.
func (s *Source) Stop() error {
	if s.stop == nil {
		return nil
	}
	return s.stop()
}

// Start prepares source name for fleet in dir (files and logs).
func Start(name string, fleet Fleet, dir string) (*Source, error) {
	switch name {
	case File:
		return startFile(fleet, dir)
	case Redis:
		return startRedis(fleet, dir)
	case JWT:
		return startJWT(dir)
	case HTTP:
		return startHTTP(fleet)
	}
	return nil, fmt.Errorf("tokensrc: unknown source %q (want %s)", name, strings.Join(Names(), ", "))
}

func startFile(fleet Fleet, dir string) (*Source, error) {
	var b strings.Builder
	b.WriteString("# written by vncedge bench token-sources: one token per session\n")
	_ = fleet.tokens(func(tok, target string) error {
		fmt.Fprintf(&b, "%s: %s\n", tok, target)
		return nil
	})
	path := filepath.Join(dir, "tokens")
	if err := load.WriteFileAtomic(path, b.String()); err != nil {
		return nil, err
	}
	return &Source{Name: File, Flags: []string{"--token-file", path}, Token: load.TokenSession}, nil
}

// redisPrefix keeps bench's keys apart from anything else in the server.
const redisPrefix = "vncedge-bench:"

func startRedis(fleet Fleet, dir string) (*Source, error) {
	bin, err := child.Look("redis-server")
	if err != nil {
		return nil, fmt.Errorf("tokensrc: %w (Debian package redis-server)", err)
	}
	port, err := child.FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// A throwaway server: loopback only, no persistence, no protected-mode surprises.
	p, err := child.Start("redis-server", bin, []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--protected-mode", "yes",
	}, filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	if err := p.WaitTCP(10*time.Second, addr); err != nil {
		_ = p.Stop(2 * time.Second)
		return nil, err
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = p.Stop(2 * time.Second)
		return nil, fmt.Errorf("tokensrc: redis ping: %w", err)
	}
	var batch []any
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.MSet(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	err = fleet.tokens(func(tok, target string) error {
		batch = append(batch, redisPrefix+tok, target)
		if len(batch) >= 2000 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		_ = p.Stop(2 * time.Second)
		return nil, fmt.Errorf("tokensrc: load redis keys: %w", err)
	}
	return &Source{
		Name:  Redis,
		Flags: []string{"--token-redis", "redis://" + addr + "/0", "--token-redis-prefix", redisPrefix},
		Token: load.TokenSession,
		stop:  func() error { return p.Stop(5 * time.Second) },
	}, nil
}

func startJWT(dir string) (*Source, error) {
	// Hex, so the secret never ends in a newline the key file reader would drop.
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	secret := []byte(hex.EncodeToString(raw))
	path := filepath.Join(dir, "jwt.key")
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		return nil, fmt.Errorf("tokensrc: %w", err)
	}
	return &Source{Name: JWT, Flags: []string{"--token-jwt-key", path}, Token: load.TokenJWT, Secret: secret}, nil
}

// Lookup is the HTTP lookup service: GET /{token} answers 200 with host:port, or 404.
type Lookup struct {
	mu      sync.RWMutex
	targets map[string]string
}

// NewLookup serves the given token -> host:port map.
func NewLookup(targets map[string]string) *Lookup { return &Lookup{targets: targets} }

// ServeHTTP answers one lookup.
func (l *Lookup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	tok := strings.TrimPrefix(r.URL.Path, "/")
	l.mu.RLock()
	target, ok := l.targets[tok]
	l.mu.RUnlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(target))
}

func startHTTP(fleet Fleet) (*Source, error) {
	targets := map[string]string{}
	_ = fleet.tokens(func(tok, target string) error {
		targets[tok] = target
		return nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: NewLookup(targets), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return &Source{
		Name:  HTTP,
		Flags: []string{"--token-http", "http://" + ln.Addr().String()},
		Token: load.TokenSession,
		stop: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := srv.Shutdown(ctx)
			if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
				return fmt.Errorf("tokensrc: lookup service: %w", serr)
			}
			return err
		},
	}, nil
}

package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPConfig configures an HTTPSource.
type HTTPConfig struct {
	// URL is --token-http: the token, path-escaped, is appended as one more
	// path segment (GET URL/{token}); if URL contains "{token}", it goes
	// there instead (websockify's JSONTokenApi put it at "%s").
	URL string
	// HeaderFile is --token-http-header-file: "Name: value" lines (blank
	// lines and '#' comments skipped) sent with every lookup, e.g.
	// "Authorization: Bearer ...". Re-read on reload.
	HeaderFile string
	// Timeout is a backstop for one request, on top of the Router's lookup
	// timeout; default 30s.
	Timeout time.Duration
	// Transport replaces the pooled keep-alive transport (tests).
	Transport http.RoundTripper
}

// HTTPSource asks a lookup service: 200 with a ParseGrantValue body grants
// the token, 404 means unknown, 5xx and unreachable mean the store is down
// (503), anything else is an error (502). Redirects are not followed.
type HTTPSource struct {
	cfg     HTTPConfig
	base    *url.URL
	client  *http.Client
	where   string
	headers atomic.Pointer[http.Header]

	mu      sync.Mutex
	lastSig fileStamp
}

// Keep-alive pool: lookups are short and come in bursts; enough idle
// connections per host that a burst does not redial.
const (
	httpMaxIdlePerHost = 64
	httpIdleTimeout    = 90 * time.Second
)

// NewHTTPSource checks the URL and reads the header file.
func NewHTTPSource(cfg HTTPConfig) (*HTTPSource, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("token lookup URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("token lookup URL must be http:// or https:// with a host")
	}
	if u.User != nil {
		return nil, errors.New("token lookup URL: put credentials in --token-http-header-file, not in the URL")
	}
	if u.RawQuery != "" && !strings.Contains(cfg.URL, "{token}") {
		return nil, errors.New("token lookup URL has a query: the token is appended to the path, so use {token} to place it")
	}
	rt := cfg.Transport
	if rt == nil {
		rt = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          4 * httpMaxIdlePerHost,
			MaxIdleConnsPerHost:   httpMaxIdlePerHost,
			IdleConnTimeout:       httpIdleTimeout,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	s := &HTTPSource{
		cfg:  cfg,
		base: u,
		client: &http.Client{
			Transport: rt,
			Timeout:   timeout,
			// A redirect could carry the bearer header elsewhere; the
			// lookup service answers directly or not at all.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		where: u.Redacted(),
	}
	if rep := s.Reload(); rep.Err != nil {
		return nil, rep.Err
	}
	return s, nil
}

// Name identifies the source in logs and metrics.
func (s *HTTPSource) Name() string { return "http" }

// Where is the lookup URL, for logs.
func (s *HTTPSource) Where() string { return s.where }

// Reload re-reads the header file (a rotated bearer token); a file that
// cannot be read keeps the previous headers.
func (s *HTTPSource) Reload() SourceReload {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := SourceReload{Source: s.Name(), Detail: s.cfg.HeaderFile, Tokens: -1}
	h := http.Header{}
	if s.cfg.HeaderFile != "" {
		s.lastSig = statStamp(s.cfg.HeaderFile)
		data, err := readBounded(s.cfg.HeaderFile, 64<<10)
		if err == nil {
			h, err = ParseHeaderFile(data)
		}
		if err != nil {
			rep.Err = fmt.Errorf("header file %s: %w", s.cfg.HeaderFile, err)
			return rep
		}
	}
	s.headers.Store(&h)
	return rep
}

// Changed reports whether the header file changed since the last reload.
func (s *HTTPSource) Changed() bool {
	if s.cfg.HeaderFile == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return statStamp(s.cfg.HeaderFile) != s.lastSig
}

// ParseHeaderFile reads "Name: value" lines; blank lines and lines starting
// with '#' are skipped. Errors name the line, never its value (a secret).
func ParseHeaderFile(data []byte) (http.Header, error) {
	h := http.Header{}
	for i, line := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || checkCookieName(name) != nil {
			return nil, fmt.Errorf("line %d: want \"Name: value\" with a valid header name", i+1)
		}
		if strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return nil, fmt.Errorf("line %d: control character in the value", i+1)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			return nil, fmt.Errorf("line %d: header %s is set by the HTTP client", i+1, name)
		}
		h.Add(name, value)
	}
	return h, nil
}

// requestURL places the escaped token.
func (s *HTTPSource) requestURL(token string) string {
	esc := url.PathEscape(token)
	if strings.Contains(s.cfg.URL, "{token}") {
		return strings.Replace(s.cfg.URL, "{token}", esc, 1)
	}
	return strings.TrimRight(s.cfg.URL, "/") + "/" + esc
}

// Lookup asks the service for the token's grant.
func (s *HTTPSource) Lookup(ctx context.Context, token string) (Grant, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.requestURL(token), nil)
	if err != nil {
		return Grant{}, errors.New("cannot build the lookup request")
	}
	for k, v := range *s.headers.Load() {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json, text/plain")
	resp, err := s.client.Do(req)
	if err != nil {
		// url.Error quotes the URL, token and all: keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if isTimeout(err) {
			return Grant{}, fmt.Errorf("GET %s/…: %w", s.where, err)
		}
		return Grant{}, unavailable(fmt.Errorf("GET %s/…: %w", s.where, err))
	}
	defer func() {
		// Drain a little so the connection goes back to the pool.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
	}()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound:
		return Grant{}, ErrUnknownToken
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return Grant{}, unavailable(fmt.Errorf("lookup service answered %s", resp.Status))
	default:
		return Grant{}, fmt.Errorf("lookup service answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxGrantValue+1))
	if err != nil {
		if isTimeout(err) {
			return Grant{}, err
		}
		return Grant{}, unavailable(fmt.Errorf("reading the lookup answer: %w", err))
	}
	g, err := ParseGrantValue(body)
	if err != nil {
		return Grant{}, fmt.Errorf("lookup answer: %w", err)
	}
	return g, nil
}

// Close releases idle connections.
func (s *HTTPSource) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

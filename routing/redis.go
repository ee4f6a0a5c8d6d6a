package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRevokeChannel is --token-redis-revoke-channel's default.
const DefaultRevokeChannel = "vncedge:revoke"

// DefaultClaimPrefix starts the Redis keys of single-use claims. It is not
// under the token prefix, so a claim can never be read as a token.
const DefaultClaimPrefix = "vncedge:used:"

// RedisConfig configures a RedisSource.
type RedisConfig struct {
	// URL is --token-redis: redis://[user:password@]host:port/db, or
	// rediss:// for TLS. go-redis's URL options apply (dial_timeout=3s,
	// pool_size=20, ...). With master_name=NAME the host (and any addr=
	// parameters) are Sentinels; with addr= parameters and no master_name
	// it is a Redis Cluster.
	URL           string
	Prefix        string // --token-redis-prefix: key = Prefix + token
	RevokeChannel string // --token-redis-revoke-channel; default DefaultRevokeChannel
	// SingleUse takes values with GETDEL, so a token opens one session
	// across every instance (--token-single-use).
	SingleUse   bool
	ClaimPrefix string       // default DefaultClaimPrefix
	Logger      *slog.Logger // nil: slog.Default()
}

// RedisSource looks tokens up in Redis (key = prefix + token; the value is
// ParseGrantValue's format) and, under Router.Run, listens for revocations:
// messages on the revoke channel (the message is the token) and, when the
// server has keyspace notifications on (notify-keyspace-events with K, g
// and x, or A), deletions and expiries of prefixed keys.
type RedisSource struct {
	cfg     RedisConfig
	client  redis.UniversalClient
	db      int
	cluster bool
	where   string // the URL without credentials, for logs
	log     *slog.Logger

	// consumed remembers the keys our own GETDEL removed, so their "del"
	// notification does not revoke the session that just used the token.
	mu       sync.Mutex
	consumed map[string]time.Time
}

// maxConsumed bounds RedisSource.consumed; entries live consumedTTL.
const (
	maxConsumed = 10000
	consumedTTL = time.Minute
)

// NewRedisSource parses the URL and makes the client. It does no I/O: Redis
// may come up after vncedge (see Ping).
func NewRedisSource(cfg RedisConfig) (*RedisSource, error) {
	if cfg.RevokeChannel == "" {
		cfg.RevokeChannel = DefaultRevokeChannel
	}
	if cfg.ClaimPrefix == "" {
		cfg.ClaimPrefix = DefaultClaimPrefix
	}
	s := &RedisSource{cfg: cfg, log: cfg.Logger, consumed: make(map[string]time.Time)}
	if s.log == nil {
		s.log = slog.Default()
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, password and all
		}
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, errors.New("redis URL: the scheme must be redis:// or rediss://")
	}
	s.where = u.Redacted()
	q := u.Query()
	// Deadlines come from the lookup's context (ContextTimeoutEnabled), and
	// one dial attempt per try (go-redis' default is five, 100ms apart): a
	// refused connection must fail the lookup fast with 503, not use up its
	// timeout. dialer_retries= in the URL still overrides.
	switch {
	case q.Has("master_name"):
		opt, err := redis.ParseFailoverURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis URL (Sentinel): %w", err)
		}
		opt.ContextTimeoutEnabled = true
		opt.DialerRetries = cmpOrInt(opt.DialerRetries, 1)
		s.db, s.client = opt.DB, redis.NewFailoverClient(opt)
	case q.Has("addr"):
		opt, err := redis.ParseClusterURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis URL (Cluster): %w", err)
		}
		opt.ContextTimeoutEnabled = true
		opt.DialerRetries = cmpOrInt(opt.DialerRetries, 1)
		s.cluster, s.client = true, redis.NewClusterClient(opt)
	default:
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis URL: %w", err)
		}
		opt.ContextTimeoutEnabled = true
		opt.DialerRetries = cmpOrInt(opt.DialerRetries, 1)
		s.db, s.client = opt.DB, redis.NewClient(opt)
	}
	return s, nil
}

// Name identifies the source in logs and metrics.
func (s *RedisSource) Name() string { return "redis" }

// Where is the server URL without credentials.
func (s *RedisSource) Where() string { return s.where }

func (s *RedisSource) consumes() bool { return s.cfg.SingleUse }

// Lookup reads the token's key (GETDEL under SingleUse).
func (s *RedisSource) Lookup(ctx context.Context, token string) (Grant, error) {
	key := s.cfg.Prefix + token
	var (
		val string
		err error
	)
	if s.cfg.SingleUse {
		// Marked before the command: its "del" notification may be read
		// by the subscription before GETDEL's own answer is.
		s.rememberConsumed(key)
		val, err = s.client.GetDel(ctx, key).Result()
		if err != nil {
			s.takeConsumed(key)
		}
	} else {
		val, err = s.client.Get(ctx, key).Result()
	}
	if errors.Is(err, redis.Nil) {
		return Grant{}, ErrUnknownToken
	}
	if err != nil {
		return Grant{}, redisError(err)
	}
	g, err := ParseGrantValue([]byte(val))
	if err != nil {
		return Grant{}, fmt.Errorf("value of the token's key: %w", err)
	}
	return g, nil
}

// redisError marks errors that mean "Redis cannot be used now" as
// ErrUnavailable (503); deadlines stay deadlines (504); other server
// replies are plain errors (502).
func redisError(err error) error {
	if isTimeout(err) {
		return err
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := err.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "NOAUTH", "WRONGPASS", "NOPERM"} {
			if strings.HasPrefix(msg, p) {
				return unavailable(err)
			}
		}
		return err // a reply we did not expect (WRONGTYPE, ...): 502
	}
	// Refused or reset connections, pool timeouts, a closed client: the
	// store cannot be reached.
	return unavailable(err)
}

func (s *RedisSource) rememberConsumed(key string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.consumed) >= maxConsumed {
		for k, t := range s.consumed {
			if now.Sub(t) > consumedTTL {
				delete(s.consumed, k)
			}
		}
		if len(s.consumed) >= maxConsumed {
			return // the notification will revoke a session that just opened: rare, and safe
		}
	}
	s.consumed[key] = now
}

func (s *RedisSource) takeConsumed(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.consumed[key]
	delete(s.consumed, key)
	return ok && time.Since(t) <= consumedTTL
}

// Ping checks that Redis answers (for --check and the start-up log).
func (s *RedisSource) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return redisError(err)
	}
	return nil
}

// Close closes the client.
func (s *RedisSource) Close() error { return s.client.Close() }

// Claims is a ClaimStore in this Redis (SET NX with the claim's expiry), so
// every instance agrees that a single-use token was used.
func (s *RedisSource) Claims() ClaimStore { return redisClaims{s} }

type redisClaims struct{ s *RedisSource }

// Claim implements ClaimStore.
func (c redisClaims) Claim(ctx context.Context, key string, until time.Time) (bool, error) {
	ttl := time.Until(until)
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	ok, err := c.s.client.SetNX(ctx, c.s.cfg.ClaimPrefix+key, "1", ttl).Result()
	if err != nil {
		return false, redisError(err)
	}
	return ok, nil
}

func (s *RedisSource) publishRevoke(ctx context.Context, token string) error {
	if err := s.client.Publish(ctx, s.cfg.RevokeChannel, token).Err(); err != nil {
		return redisError(err)
	}
	return nil
}

// keyspaceChannel is the keyspace-notification channel prefix of our db.
func (s *RedisSource) keyspaceChannel() string {
	return "__keyspace@" + strconv.Itoa(s.db) + "__:"
}

// globEscape quotes Redis glob metacharacters, so the prefix matches itself.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if strings.IndexByte(`*?[]\`, c) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// subscriptionPing is how long the subscription may be silent before we
// ping it, to notice a connection that died without a word.
const subscriptionPing = 30 * time.Second

// run keeps the revocation subscriptions up until ctx ends, reconnecting
// with backoff (go-redis resubscribes on reconnect). Messages published
// while the subscription was down are lost: that is Redis pub/sub.
func (s *RedisSource) run(ctx context.Context, ev storeEvents) {
	ks := s.keyspaceChannel()
	pattern := ks + globEscape(s.cfg.Prefix) + "*"
	ps := s.client.Subscribe(ctx, s.cfg.RevokeChannel)
	if err := ps.PSubscribe(ctx, pattern); err != nil {
		s.log.Debug("redis keyspace subscription deferred", "redis", s.where, "err", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()

	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	down, checked := false, false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, subscriptionPing)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isTimeout(err) {
				if err = ps.Ping(ctx); err == nil {
					continue
				}
			}
			if !down {
				s.log.Warn("redis revocation subscription down; retrying", "redis", s.where, "err", err)
				down = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if down {
				s.log.Info("redis revocation subscription restored", "redis", s.where)
				down = false
			}
			backoff = minBackoff
			if !checked {
				checked = true
				go s.checkKeyspaceEvents(ctx)
			}
		case *redis.Message:
			s.handle(m, ks, ev)
		}
	}
}

func (s *RedisSource) handle(m *redis.Message, ks string, ev storeEvents) {
	if m.Channel == s.cfg.RevokeChannel {
		ev.revokedByMessage(m.Payload)
		return
	}
	key, ok := strings.CutPrefix(m.Channel, ks)
	if !ok {
		return
	}
	token, ok := strings.CutPrefix(key, s.cfg.Prefix)
	if !ok || token == "" {
		return
	}
	switch m.Payload {
	case "del", "expired":
	case "set":
		// Delivered only with notify-keyspace-events "$" (or A).
		ev.setInStore(token)
		return
	default:
		return
	}
	if m.Payload == "del" && s.takeConsumed(key) {
		return // our own GETDEL: the session it opened stays
	}
	ev.deletedFromStore(token)
}

// checkKeyspaceEvents says in the log whether deleting or expiring a token
// key will end its sessions. Managed Redis often refuses CONFIG: then we
// cannot tell, and say nothing louder than debug.
func (s *RedisSource) checkKeyspaceEvents(ctx context.Context) {
	if s.cluster {
		s.log.Info("redis cluster: keyspace notifications are seen from one node only; publish revocations on the revoke channel",
			"channel", s.cfg.RevokeChannel)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := s.client.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		s.log.Debug("redis CONFIG GET notify-keyspace-events refused", "err", err)
		return
	}
	flags := v["notify-keyspace-events"]
	if !keyspaceEventsOn(flags) {
		s.log.Info("redis keyspace notifications are off: a deleted or expired token key does not end its sessions "+
			"(set notify-keyspace-events Kgx, or publish revocations on the revoke channel)",
			"redis", s.where, "notify_keyspace_events", flags, "channel", s.cfg.RevokeChannel)
	}
}

// keyspaceEventsOn reports whether flags deliver keyspace "del" and
// "expired" events: K, plus g and x (or A, which includes both).
func keyspaceEventsOn(flags string) bool {
	has := func(c string) bool { return strings.Contains(flags, c) }
	return has("K") && (has("A") || (has("g") && has("x")))
}

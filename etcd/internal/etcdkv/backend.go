package etcdkv

// backend.go: a handle on one store of an etcd cluster — its client, its
// options, and the transactions it begins.
//
// May touch: the store's keys in etcd (through Tx and the lock), the
// client's connections.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/internal/kv"
)

// Defaults of Config.
const (
	// DefaultSessionTTL is the lease of a holder's session: a holder that
	// dies holding the lock blocks the store this long. The server raises
	// a TTL below its minimum (about 1.5 × its election timeout: 2 s with
	// etcd's default 1 s election timeout), counts whole seconds (a TTL is
	// rounded up here), and extends every lease by its TTL when a new
	// leader is elected, so a stall can last longer across an election.
	DefaultSessionTTL = 5 * time.Second
	// DefaultDialTimeout bounds connecting, every clean-up (unlock,
	// revoke) and, when the caller's context has no deadline, each round
	// trip that finds no endpoint.
	DefaultDialTimeout = 5 * time.Second
	// DefaultMaxTxnOps mirrors etcd's --max-txn-ops default.
	DefaultMaxTxnOps = 128
	// DefaultMaxRequestBytes mirrors etcd's --max-request-bytes default
	// (1.5 MiB).
	DefaultMaxRequestBytes = 1536 * 1024
)

// Config configures a Backend. Endpoints and Name are required.
type Config struct {
	Endpoints []string // client URLs or host:port, of one cluster
	Name      string   // the store: its keys all start with "<Name>/"

	SessionTTL  time.Duration // the lock's lease; DefaultSessionTTL if 0
	DialTimeout time.Duration // DefaultDialTimeout if 0

	// LockTimeout bounds a writable Begin's wait for the store's lock when
	// the caller's context has no earlier deadline (psbase.WithLockTimeout;
	// 0: the context alone). Past it Begin returns a
	// *psbase.LockTimeoutError naming the holder.
	LockTimeout time.Duration

	// The server's limits, as its flags set them; a commit above one
	// returns a *TxTooLargeError before anything is sent.
	MaxTxnOps       int // DefaultMaxTxnOps if 0
	MaxRequestBytes int // DefaultMaxRequestBytes if 0

	// TLS, when set, is the client's TLS configuration (the server's CA,
	// and a client certificate if the cluster asks for one).
	TLS *tls.Config
	// Username and Password authenticate with etcd's user/role auth (both
	// empty: none). The password is never printed.
	Username, Password string

	Logger *slog.Logger // slog.Default() if nil

	weak weakness // deliberately broken variants, for the negative controls
}

// weakness switches off one guarantee, so the tests can show it matters.
type weakness struct {
	noFence       bool // commit without the Compare on the lock key
	noLock        bool // writable Tx without the lock (and so without a fence)
	noLimits      bool // send transactions above the limits
	cleanupAll    bool // Cleanup takes every data and sequence key for dead
	noLockTimeout bool // ignore Config.LockTimeout: wait for the lock as long as ctx allows

	feed feedWeakness // the change feed's (watch.go)
}

// Backend is one store on an etcd cluster. Its methods are safe for
// concurrent use; its writable transactions run one at a time (an
// in-process gate in front of the cluster-wide lock: a Mutex's key is its
// session's lease, so two transactions sharing the session would both
// "hold" it).
type Backend struct {
	cfg    Config
	cli    *clientv3.Client
	l      layout
	log    *slog.Logger
	ctx    context.Context // lives until Close: session keep-alives
	cancel context.CancelFunc
	gate   chan struct{}
	bg     sync.WaitGroup

	mu     sync.Mutex
	sess   *concurrency.Session
	closed bool
}

// Open connects to the cluster and checks that an endpoint answers within
// ctx and the dial timeout. It does not create anything.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := validName(cfg.Name); err != nil {
		return nil, fmt.Errorf("%w: %v", psbase.ErrOption, err)
	}
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: no etcd endpoints", psbase.ErrOption)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = DefaultMaxTxnOps
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bctx, cancel := context.WithCancel(context.Background())
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Context:     bctx,
		Logger:      zap.NewNop(),
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
	})
	if err != nil {
		cancel()
		if ae := authError(cfg.Name, err); ae != err {
			return nil, ae
		}
		return nil, tlsCause(ctx, cfg, &UnreachableError{Endpoints: cfg.Endpoints, Op: "open", Err: err})
	}
	b := &Backend{cfg: cfg, cli: cli, l: layout{prefix: cfg.Name + "/"}, log: cfg.Logger,
		ctx: bctx, cancel: cancel, gate: make(chan struct{}, 1)}
	if _, err := b.revision(ctx, "open"); err != nil {
		b.Close()
		return nil, tlsCause(ctx, cfg, authError(cfg.Name, err))
	}
	return b, nil
}

// Name is the store's name.
func (b *Backend) Name() string { return b.cfg.Name }

// Client is the backend's etcd client (for tools and tests).
func (b *Backend) Client() *clientv3.Client { return b.cli }

// bounded returns ctx limited to the dial timeout when it has no deadline
// of its own: a round trip with every endpoint down waits for one
// (gRPC's wait-for-ready) until its context ends.
func (b *Backend) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.cfg.DialTimeout)
}

// revision returns the cluster's current revision (a linearizable read).
func (b *Backend) revision(ctx context.Context, op string) (int64, error) {
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	resp, err := b.cli.Get(ctx, b.l.prefix, clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	if err != nil {
		return 0, b.unreachable(op, err)
	}
	return resp.Header.Revision, nil
}

func (b *Backend) unreachable(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || ctxCode(err) {
		return &UnreachableError{Endpoints: b.cfg.Endpoints, Op: op, Err: err}
	}
	if ae := authError(b.cfg.Name, err); ae != err {
		return ae
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("%w: etcd %s of store %q: the transaction's snapshot was compacted away under it (run it again): %w", psbase.ErrUnavailable, op, b.cfg.Name, err)
	}
	return fmt.Errorf("%w: etcd %s of store %q: %w", psbase.ErrUnavailable, op, b.cfg.Name, err)
}

// Begin starts a transaction. A read-only one reads the snapshot at the
// cluster's current revision and takes no lock. A writable one waits for
// the store's lock until ctx ends or Config.LockTimeout passes, whichever
// comes first (then a *psbase.LockTimeoutError names the holder); op is
// recorded beside the lock for whoever waits. ctx is the transaction's:
// its reads and its commit honour it (the lock timeout bounds the wait
// only).
func (b *Backend) Begin(ctx context.Context, writable bool, op string) (kv.Tx, error) {
	return b.begin(ctx, writable, op)
}

func (b *Backend) begin(ctx context.Context, writable bool, op string) (*Tx, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, psbase.ErrClosed
	}
	t := &Tx{b: b, ctx: ctx, writable: writable, cache: map[string]cached{}}
	if !writable || b.cfg.weak.noLock {
		rev, err := b.revision(ctx, "begin")
		if err != nil {
			return nil, err
		}
		t.rev = rev
		return t, nil
	}
	start := time.Now()
	h, err := b.acquire(ctx, op)
	if err != nil {
		return nil, err
	}
	t.held, t.rev, t.waited = h, h.rev, time.Since(start)
	return t, nil
}

// View runs fn in a read-only transaction.
func (b *Backend) View(ctx context.Context, fn func(kv.Tx) error) error {
	t, err := b.begin(ctx, false, "view")
	if err != nil {
		return err
	}
	ferr := fn(t)
	rerr := t.Rollback()
	if ferr != nil {
		return ferr
	}
	return rerr
}

// Update runs fn in a writable transaction and commits it if fn returns nil.
func (b *Backend) Update(ctx context.Context, op string, fn func(kv.Tx) error) error {
	t, err := b.begin(ctx, true, op)
	if err != nil {
		return err
	}
	if err := fn(t); err != nil {
		_ = t.Rollback()
		return err
	}
	return t.Commit()
}

// Close ends the session (revoking its lease, within the dial timeout) and
// the client. Transactions still open fail.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	s := b.sess
	b.sess = nil
	b.mu.Unlock()
	if s != nil {
		b.closeSession(s)
	}
	b.cancel()
	b.bg.Wait()
	return b.cli.Close()
}

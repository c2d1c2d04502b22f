package psbase

// May touch: the store's files only through local.go, warm.go, groupcommit.go and internal/lock; Destroy removes them.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/kv"
	"github.com/psbase/psbase/internal/lock"
)

// Store is a handle on a psbase store: one table of records in one bbolt
// file, shared by any number of processes.
//
// The invariant that makes it process-safe: every method acquires the
// store's lock (shared for reads, exclusive for writes, creation, schema
// changes and Cleanup), THEN opens the bbolt file (read-only under a shared
// lock), runs one bbolt transaction, closes the file, and only THEN releases
// the lock. No write handle is ever kept between operations: its in-memory
// freelist would go stale when another process commits. The one exception
// is a read-only handle kept for warm reads (warm.go; WithoutWarmReads turns
// it off): it is used only under the shared lock, checked before every read
// against the file's identity and size (a replaced or grown file means a
// new handle), and bbolt's flock on it is dropped right after the open (kept,
// it would block every writer's open: bbolt issue 228).
//
// A Store is safe for use by many goroutines, and two Stores on the same path
// in one process exclude each other like two processes do. Close closes the
// kept read handle and makes the Store refuse further calls.
type Store struct {
	path string
	cfg  config
	lock *lock.File
	log  *slog.Logger

	closed   atomic.Bool
	lastWait atomic.Int64 // nanoseconds the last lock acquisition waited

	met *metrics // counters (metrics.go)

	remote backend.Backend // a store in a remote backend (remote.go); nil: the local file, s.lock
	warm   warmReader      // the kept read handle (warm.go)
	gc     gcState         // group commit (groupcommit.go)

	schemaMu  sync.Mutex
	schema    *schema // decoded schema, immutable, shared by transactions
	schemaRaw []byte  // the bytes it was decoded from
}

// Create creates a new store at path with the given fields, under the
// exclusive lock. If a store (or any non-empty file) is already there it
// returns ErrExists, unless WithOverwrite is given. The directory must exist.
// The new store is built aside and put in place atomically: a process killed
// during Create leaves the old state or the complete new store. A symbolic
// link at path is followed once, to the file it names; the lock files live
// beside that file.
func Create(ctx context.Context, path string, fields []Field, opts ...Option) (*Store, error) {
	cfg := newConfig(opts)
	if scheme := remoteScheme(path); scheme != "" {
		return createOrOpenRemote(ctx, "create", scheme, path, fields, cfg, false)
	}
	real, err := resolvePath(path)
	if err != nil {
		return nil, wrapErr("create", path, err)
	}
	sch, err := newSchema(fields)
	if err != nil {
		return nil, wrapErr("create", real, err)
	}
	s, err := newStore(real, cfg)
	if err != nil {
		return nil, wrapErr("create", real, err)
	}
	err = s.locked(ctx, "create", true, true, func(*lock.Grant) error {
		return s.create(sch, cfg.overwrite)
	})
	if err != nil {
		return nil, wrapErr("create", real, err)
	}
	s.logf(ctx, slog.LevelInfo, "created store", "fields", len(fields))
	return s, nil
}

// Open opens the existing store at path, checking under a shared lock that it
// is a psbase store this version can read. A missing store is ErrNotExist
// (and no file is created) unless WithCreate is given, in which case it is
// created; of many processes racing to open-or-create, exactly one creates.
// A file left empty by an interrupted Create of an older psbase counts as
// missing. A symbolic link at path is followed once (see Create).
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := newConfig(opts)
	if cfg.overwrite {
		if scheme := remoteScheme(path); scheme != "" {
			path = remoteName(scheme, path)
		}
		return nil, wrapErr("open", path, errorf(ErrOption, "WithOverwrite means nothing to Open: use Create(..., WithOverwrite()) to replace a store"))
	}
	if scheme := remoteScheme(path); scheme != "" {
		return createOrOpenRemote(ctx, "open", scheme, path, cfg.create, cfg, true)
	}
	real, err := resolvePath(path)
	if err != nil {
		return nil, wrapErr("open", path, err)
	}
	var createSchema *schema
	if cfg.create != nil {
		sch, err := newSchema(cfg.create)
		if err != nil {
			return nil, wrapErr("open", real, err)
		}
		createSchema = sch
	}
	if err := statStore(real); err != nil {
		if createSchema == nil || !errors.Is(err, ErrNotExist) || errors.Is(err, errIsDir) {
			return nil, wrapErr("open", real, err)
		}
	}
	s, err := newStore(real, cfg)
	if err != nil {
		return nil, wrapErr("open", real, err)
	}
	if createSchema != nil {
		// Decide under the exclusive lock: the first process creates, the
		// rest find the store there and only verify it.
		err = s.locked(ctx, "open", true, true, func(*lock.Grant) error {
			fi, err := os.Lstat(real)
			if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Mode().IsRegular() && s.halfMade(fi)) {
				return s.create(createSchema, false)
			}
			return s.verify(true)
		})
	} else if !cfg.lazyOpen {
		err = s.shared(ctx, "open", func() error { return s.verifyExisting() })
	}
	if err != nil {
		return nil, wrapErr("open", real, err)
	}
	return s, nil
}

// verifyExisting is verify for Open without WithCreate: a file left empty by
// an interrupted Create is reported as no store at all.
func (s *Store) verifyExisting() error {
	err := s.verify(false)
	if errors.Is(err, ErrCorrupt) {
		if fi, serr := os.Lstat(s.path); serr == nil && fi.Mode().IsRegular() && s.halfMade(fi) {
			return fmt.Errorf("%w: %s holds no store (its creation was interrupted); Create or Open with WithCreate makes one", ErrNotExist, s.path)
		}
	}
	return err
}

// statStore reports ErrNotExist for a missing path or a directory.
func statStore(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: no file at %s", ErrNotExist, path)
	case err != nil:
		return classifyPathError(path, err)
	case fi.IsDir():
		return fmt.Errorf("%w: %s %w", ErrNotExist, path, errIsDir)
	}
	return nil
}

func newStore(path string, cfg config) (*Store, error) {
	lk, err := lock.New(path, lock.Config{
		FileMode:       cfg.fileMode,
		AllowNetworkFS: cfg.allowNetworkFS,
		Logger:         cfg.logger,
		Protocol:       cfg.protocol,
	})
	if err != nil {
		err = fromLock(err)
		if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrNotExist) {
			err = fmt.Errorf("%w: directory %s: %w", ErrNotExist, filepath.Dir(path), err)
		}
		return nil, err
	}
	s := &Store{path: path, cfg: cfg, lock: lk, log: cfg.logger, met: newMetrics()}
	return s, nil
}

// exclusive and shared run fn under the lock without opening the file.
func (s *Store) exclusive(ctx context.Context, op string, fn func() error) error {
	return s.locked(ctx, op, true, false, func(*lock.Grant) error { return fn() })
}

func (s *Store) shared(ctx context.Context, op string, fn func() error) error {
	return s.locked(ctx, op, false, false, func(*lock.Grant) error { return fn() })
}

// locked runs fn holding the lock; mayCreate lets it create the lock files
// of a store that does not exist yet (Create).
func (s *Store) locked(ctx context.Context, op string, exclusive, mayCreate bool, fn func(*lock.Grant) error) (err error) {
	start := time.Now()
	g, wait, err := s.acquireWait(ctx, op, exclusive, mayCreate)
	if err != nil {
		s.done(ctx, op, start, wait, false, err)
		return err
	}
	defer func() {
		g.Release()
		s.done(ctx, op, start, wait, false, err)
	}()
	return fn(g)
}

// acquire takes the lock for op, bounded by the context and the lock timeout.
func (s *Store) acquire(ctx context.Context, op string, exclusive, mayCreate bool) (*lock.Grant, error) {
	g, _, err := s.acquireWait(ctx, op, exclusive, mayCreate)
	return g, err
}

// acquireWait is acquire that also says how long it waited.
func (s *Store) acquireWait(ctx context.Context, op string, exclusive, mayCreate bool) (*lock.Grant, time.Duration, error) {
	if s.closed.Load() {
		return nil, 0, ErrClosed
	}
	if s.remote != nil {
		return nil, 0, s.errLocalOnly(op) // every user of the file lock needs the file
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, &LockTimeoutError{Path: s.path + ".lock", Op: op, Exclusive: exclusive, Err: err}
	}
	if s.cfg.lockTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.lockTimeout)
		defer cancel()
	}
	g, waited, err := s.lock.Acquire(ctx, exclusive, op, mayCreate)
	s.lastWait.Store(int64(waited))
	s.met.lockWait.observe(waited.Seconds())
	if err != nil {
		return nil, waited, fromLock(err)
	}
	if waited > time.Second {
		s.logf(ctx, slog.LevelDebug, "waited for lock", "op", op, "waited", waited)
	}
	return g, waited, nil
}

// begin starts a transaction for op: the backend's lock and transaction,
// then the format and schema.
func (s *Store) begin(ctx context.Context, op string, write bool) (*Tx, error) {
	var kt kv.Tx
	var err error
	switch {
	case s.remote == nil:
		kt, err = s.beginLocal(ctx, op, write)
	case s.closed.Load():
		err = ErrClosed
	default:
		kt, err = s.remote.Begin(ctx, write, op)
	}
	if err != nil {
		return nil, err
	}
	tx := &Tx{s: s, ctx: ctx, op: op, kt: kt, write: write}
	if err := tx.init(); err != nil {
		_ = tx.finish(false)
		return nil, err
	}
	return tx, nil
}

// run executes fn in a transaction of its own: commit on nil (writes),
// rollback on error or panic (the panic is re-raised after the rollback, the
// lock released). fn is user code for Txn and View; for the one-call methods
// it calls guarded Tx methods only, so any panic reaching here is the user's.
func (s *Store) run(ctx context.Context, op string, write bool, fn func(*Tx) error) (err error) {
	start := time.Now()
	tx, err := s.begin(ctx, op, write)
	var wait time.Duration
	if tx != nil {
		if lt, ok := tx.kt.(*localTx); ok {
			wait = lt.waited
		} else {
			wait = s.remoteWait(tx.kt) // metrics_remote.go
		}
	} else if lt := (*LockTimeoutError)(nil); errors.As(err, &lt) {
		wait = lt.Waited
	}
	defer func() { s.done(ctx, op, start, wait, false, err) }()
	if err != nil {
		return wrapErr(op, s.path, err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.finish(false)
			if u, ok := p.(userPanic); ok {
				panic(u.v)
			}
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		_ = tx.finish(false)
		return wrapErr(op, s.path, tx.readFailure(err))
	}
	if err := tx.finish(write); err != nil && !errors.Is(err, ErrTxDone) {
		return wrapErr(op, s.path, err)
	}
	return nil
}

// Path returns the store's absolute path.
func (s *Store) Path() string { return s.path }

// Close marks the handle closed: later calls return ErrClosed, and closes
// the read-only file handle kept for warm reads (see WithoutWarmReads); no
// other file is open between operations. Transactions already begun finish
// normally. Close is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.remote != nil {
		return wrapErr("close", s.path, s.remote.Close())
	}
	s.warm.retire()
	s.gc.close()
	return nil
}

// Destroy deletes the store's files under the exclusive lock: the database,
// then the lock files. Processes waiting for the lock find the store gone
// (ErrNotExist). The handle is closed.
func (s *Store) Destroy(ctx context.Context) error {
	if s.remote != nil {
		if err := s.destroyRemote(ctx); err != nil {
			return wrapErr("destroy", s.path, err)
		}
		return s.Close()
	}
	err := s.exclusive(ctx, "destroy", func() error {
		s.warm.retire()
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return classifyIOError(err)
		}
		_ = os.Remove(s.path + suffixCompact)
		_ = os.Remove(s.path + suffixCreating)
		_ = os.Remove(s.path + suffixQueue)
		return fromLock(s.lock.RemoveFiles())
	})
	if err != nil {
		return wrapErr("destroy", s.path, err)
	}
	s.closed.Store(true)
	s.warm.retire()
	s.gc.close()
	return nil
}

// Txn runs fn in one write transaction under the exclusive lock: the
// changes commit (durably) when fn returns nil and roll back when it returns
// an error or panics. Everything fn does is atomic with respect to every
// other process: a read-modify-write inside fn cannot lose an update.
func (s *Store) Txn(ctx context.Context, fn func(*Tx) error) error {
	return s.run(ctx, "txn", true, fn)
}

// View runs fn in a read-only transaction under the shared lock: other
// readers run at the same time, writers wait.
func (s *Store) View(ctx context.Context, fn func(*Tx) error) error {
	return s.run(ctx, "view", false, fn)
}

// Begin starts a transaction that holds the store's lock (exclusive if
// writable) until Commit or Rollback. Prefer Txn and View, which cannot
// leak the lock; with Begin, `defer tx.Rollback()` right away.
func (s *Store) Begin(ctx context.Context, writable bool) (*Tx, error) {
	tx, err := s.begin(ctx, "begin", writable)
	if err != nil {
		return nil, wrapErr("begin", s.path, err)
	}
	return tx, nil
}

// logf logs to the Store's logger with the caller's ctx (so a handler sees
// its trace IDs), or context.Background() where no call carries one.
func (s *Store) logf(ctx context.Context, level slog.Level, msg string, args ...any) {
	if s.log != nil {
		if ctx == nil {
			ctx = context.Background()
		}
		s.log.Log(ctx, level, msg, append([]any{"store", s.path}, args...)...)
	}
}

package psbase

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store is a handle on a psbase store: one table of records in one bbolt
// file, shared by any number of processes.
//
// The invariant that makes it process-safe: every method acquires the
// store's lock (shared for reads, exclusive for writes, creation, schema
// changes and Cleanup), THEN opens the bbolt file (read-only under a shared
// lock), runs one bbolt transaction, closes the file, and only THEN releases
// the lock. No bbolt handle is ever kept between operations: bbolt holds a
// flock on its file for as long as it is open, so a kept handle would block
// every other process (bbolt issue 228), and its meta pages and mmap would go
// stale when another process commits.
//
// A Store is safe for use by many goroutines, and two Stores on the same path
// in one process exclude each other like two processes do. Close does not
// touch the file; it only makes the handle refuse further calls.
type Store struct {
	path string
	cfg  config
	lock *fileLock
	log  *slog.Logger

	closed   atomic.Bool
	lastWait atomic.Int64 // nanoseconds the last lock acquisition waited

	schemaMu  sync.Mutex
	schema    *schema // decoded schema, immutable, shared by transactions
	schemaRaw []byte  // the bytes it was decoded from
}

// Create creates a new store at path with the given fields, under the
// exclusive lock. If a store (or any non-empty file) is already there it
// returns ErrExists, unless WithOverwrite is given. The directory must exist.
func Create(ctx context.Context, path string, fields []Field, opts ...Option) (*Store, error) {
	cfg := newConfig(opts)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	sch, err := newSchema(fields)
	if err != nil {
		return nil, wrapErr("create", path, err)
	}
	s, err := newStore(path, cfg)
	if err != nil {
		return nil, wrapErr("create", path, err)
	}
	err = s.exclusive(ctx, "create", func() error {
		return s.create(sch, cfg.overwrite)
	})
	if err != nil {
		return nil, wrapErr("create", path, err)
	}
	s.logf(slog.LevelInfo, "created store", "fields", len(fields))
	return s, nil
}

// Open opens the existing store at path, checking under a shared lock that it
// is a psbase store this version can read. A missing store is ErrNotExist
// (and no file is created) unless WithCreate is given, in which case it is
// created; of many processes racing to open-or-create, exactly one creates.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := newConfig(opts)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	var createSchema *schema
	if cfg.create != nil {
		sch, err := newSchema(cfg.create)
		if err != nil {
			return nil, wrapErr("open", path, err)
		}
		createSchema = sch
	}
	if err := statStore(path); err != nil {
		if createSchema == nil || !errors.Is(err, ErrNotExist) || errors.Is(err, errIsDir) {
			return nil, wrapErr("open", path, err)
		}
	}
	s, err := newStore(path, cfg)
	if err != nil {
		return nil, wrapErr("open", path, err)
	}
	if createSchema != nil {
		// Decide under the exclusive lock: the first process creates, the
		// rest find the store there and only verify it.
		err = s.exclusive(ctx, "open", func() error {
			if err := statStore(path); errors.Is(err, ErrNotExist) {
				return s.create(createSchema, false)
			}
			return s.verify(false)
		})
	} else if !cfg.lazyOpen {
		err = s.shared(ctx, "open", func() error { return s.verify(true) })
	}
	if err != nil {
		return nil, wrapErr("open", path, err)
	}
	return s, nil
}

var errIsDir = errors.New("is a directory, not a store file")

// statStore reports ErrNotExist for a missing path or a directory.
func statStore(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: no file at %s", ErrNotExist, path)
	case err != nil:
		return classifyIOError(err)
	case fi.IsDir():
		return fmt.Errorf("%w: %w", ErrNotExist, errIsDir)
	}
	return nil
}

func newStore(path string, cfg config) (*Store, error) {
	if path == "" {
		return nil, errorf(ErrNotExist, "empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	lk, err := newFileLock(abs, lockConfig{
		FileMode:       cfg.fileMode,
		AllowNetworkFS: cfg.allowNetworkFS,
		Logger:         cfg.logger,
		Protocol:       cfg.protocol,
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrNotExist) {
			err = fmt.Errorf("%w: directory %s: %w", ErrNotExist, filepath.Dir(abs), err)
		}
		return nil, err
	}
	s := &Store{path: abs, cfg: cfg, lock: lk, log: cfg.logger}
	return s, nil
}

// create writes a new store file; the exclusive lock is held.
func (s *Store) create(sch *schema, overwrite bool) error {
	err := statStore(s.path)
	switch {
	case errors.Is(err, errIsDir):
		return err
	case err == nil:
		fi, _ := os.Stat(s.path)
		if fi != nil && fi.Size() > 0 && !overwrite {
			return fmt.Errorf("%w: %s (use WithOverwrite to replace it)", ErrExists, s.path)
		}
		if err := os.Remove(s.path); err != nil {
			return classifyIOError(err)
		}
	case !errors.Is(err, ErrNotExist):
		return err
	}
	db, err := bolt.Open(s.path, s.cfg.fileMode, &bolt.Options{Timeout: s.cfg.boltTimeout, NoSync: s.cfg.noSync})
	if err != nil {
		_ = os.Remove(s.path)
		return classifyIOError(err)
	}
	err = db.Update(func(btx *bolt.Tx) error { return initFormat(btx, sch) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(s.path)
		return classifyIOError(err)
	}
	return syncDir(filepath.Dir(s.path))
}

// verify checks that the file is a psbase store; the lock is held.
func (s *Store) verify(readOnly bool) error {
	db, err := s.openBolt(!readOnly)
	if err != nil {
		return err
	}
	defer db.Close()
	return withFaultGuard(func() error {
		return db.View(func(btx *bolt.Tx) error {
			if err := checkFormat(btx); err != nil {
				return err
			}
			_, err := s.loadSchema(btx.Bucket(bucketMeta))
			return err
		})
	})
}

// exclusive and shared run fn under the lock without opening the file.
func (s *Store) exclusive(ctx context.Context, op string, fn func() error) error {
	release, err := s.acquire(ctx, op, true)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}

func (s *Store) shared(ctx context.Context, op string, fn func() error) error {
	release, err := s.acquire(ctx, op, false)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}

// acquire takes the lock for op, bounded by the context and the lock timeout.
func (s *Store) acquire(ctx context.Context, op string, exclusive bool) (func(), error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return nil, &LockTimeoutError{Path: s.path + ".lock", Op: op, Exclusive: exclusive, Err: err}
	}
	if s.cfg.lockTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.lockTimeout)
		defer cancel()
	}
	release, waited, err := s.lock.acquire(ctx, exclusive, op)
	s.lastWait.Store(int64(waited))
	if err != nil {
		return nil, err
	}
	if waited > time.Second {
		s.logf(slog.LevelDebug, "waited for lock", "op", op, "waited", waited)
	}
	return release, nil
}

// openBolt opens the database file for one transaction. The file must exist
// and not be empty: bbolt would silently create or initialize it, and a
// store destroyed by another process must not come back empty.
func (s *Store) openBolt(write bool) (*bolt.DB, error) {
	opts := &bolt.Options{
		Timeout:  s.cfg.boltTimeout,
		ReadOnly: !write,
		NoSync:   s.cfg.noSync,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag&^os.O_CREATE, mode)
			if err != nil || !write {
				// Read-only: bbolt cannot initialize the file (its write
				// fails); classifyOpenError tells an empty file then.
				return f, err
			}
			fi, err := f.Stat()
			if err == nil && fi.IsDir() {
				err = errIsDir
			}
			if err == nil && fi.Size() == 0 {
				err = errorf(ErrCorrupt, "not a psbase store: the file is empty")
			}
			if err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		},
	}
	db, err := bolt.Open(s.path, s.cfg.fileMode, opts)
	if err != nil {
		if fi, serr := os.Stat(s.path); serr == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			return nil, errorf(ErrCorrupt, "not a psbase store: the file is empty")
		}
		return nil, s.classifyOpenError(err)
	}
	return db, nil
}

func (s *Store) classifyOpenError(err error) error {
	switch {
	case errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, errIsDir):
		return fmt.Errorf("%w: %w", ErrNotExist, errIsDir)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s is gone (destroyed?)", ErrNotExist, s.path)
	case isBoltTimeout(err):
		return fmt.Errorf("%w: bbolt's own file lock on %s is held by a program that does not use psbase's lock", ErrLockTimeout, s.path)
	case isBoltFormatError(err):
		return errorf(ErrCorrupt, "not a psbase store: %v", err)
	}
	return classifyIOError(err)
}

// begin starts a transaction for op: lock, open, bbolt Begin, schema.
func (s *Store) begin(ctx context.Context, op string, write bool) (*Tx, error) {
	release, err := s.acquire(ctx, op, write)
	if err != nil {
		return nil, err
	}
	db, err := s.openBolt(write)
	if err != nil {
		release()
		return nil, err
	}
	tx := &Tx{s: s, op: op, db: db, write: write, release: release}
	err = withFaultGuard(func() error {
		btx, err := db.Begin(write)
		if err != nil {
			return classifyIOError(err)
		}
		tx.btx = btx
		if err := checkFormat(btx); err != nil {
			return err
		}
		tx.meta = btx.Bucket(bucketMeta)
		tx.records = btx.Bucket(bucketRecords)
		tx.sch, err = s.loadSchema(tx.meta)
		return err
	})
	if err != nil {
		if tx.btx != nil {
			_ = tx.btx.Rollback()
		}
		_ = db.Close()
		release()
		return nil, err
	}
	return tx, nil
}

// run executes fn in a transaction of its own: commit on nil (writes),
// rollback on error or panic (the panic is re-raised after the rollback, the
// lock released).
func (s *Store) run(ctx context.Context, op string, write bool, fn func(*Tx) error) (err error) {
	tx, err := s.begin(ctx, op, write)
	if err != nil {
		return wrapErr(op, s.path, err)
	}
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
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
		return wrapErr(op, s.path, err)
	}
	if err := tx.finish(write); err != nil && !errors.Is(err, ErrTxDone) {
		return wrapErr(op, s.path, err)
	}
	return nil
}

// Path returns the store's absolute path.
func (s *Store) Path() string { return s.path }

// Close marks the handle closed: later calls return ErrClosed. The store's
// files are untouched (no file is open between operations). Transactions
// already begun finish normally. Close is idempotent.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// Destroy deletes the store's files under the exclusive lock: the database,
// then the lock files. Processes waiting for the lock find the store gone
// (ErrNotExist). The handle is closed.
func (s *Store) Destroy(ctx context.Context) error {
	err := s.exclusive(ctx, "destroy", func() error {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return classifyIOError(err)
		}
		_ = os.Remove(s.path + ".compact")
		return s.lock.removeFiles()
	})
	if err != nil {
		return wrapErr("destroy", s.path, err)
	}
	s.closed.Store(true)
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

// Insert adds one record in its own transaction and returns its ID.
func (s *Store) Insert(ctx context.Context, v any) (id uint64, err error) {
	err = s.run(ctx, "insert", true, func(tx *Tx) error {
		id, err = tx.Insert(v)
		return err
	})
	return id, err
}

// Get returns the record with that ID, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id uint64) (rec Record, err error) {
	err = s.run(ctx, "get", false, func(tx *Tx) error {
		rec, err = tx.Get(id)
		return err
	})
	return rec, err
}

// Update applies changes to rec if nobody updated it since it was read (see
// Tx.Update): ErrConflict otherwise. It returns the record as now stored.
func (s *Store) Update(ctx context.Context, rec Record, changes any) (out Record, err error) {
	err = s.run(ctx, "update", true, func(tx *Tx) error {
		out, err = tx.Update(rec, changes)
		return err
	})
	return out, err
}

// Delete removes the records with these IDs, all or none (ErrNotFound if one
// is missing), and returns how many it removed.
func (s *Store) Delete(ctx context.Context, ids ...uint64) (n int, err error) {
	err = s.run(ctx, "delete", true, func(tx *Tx) error {
		n, err = tx.Delete(ids...)
		return err
	})
	return n, err
}

// Len returns the number of records.
func (s *Store) Len(ctx context.Context) (n int, err error) {
	err = s.run(ctx, "len", false, func(tx *Tx) error {
		n, err = tx.Len()
		return err
	})
	return n, err
}

// Count returns the number of records matching every filter.
func (s *Store) Count(ctx context.Context, where ...Filter) (n int, err error) {
	err = s.run(ctx, "count", false, func(tx *Tx) error {
		n, err = tx.Count(where...)
		return err
	})
	return n, err
}

// Select returns the records matching q (see Query).
func (s *Store) Select(ctx context.Context, q Query) (recs []Record, err error) {
	err = s.run(ctx, "select", false, func(tx *Tx) error {
		recs, err = tx.Select(q)
		return err
	})
	return recs, err
}

// ForEach calls fn for every record in ID order, in constant memory, under
// one shared lock (writers wait until it returns).
func (s *Store) ForEach(ctx context.Context, fn func(Record) error) error {
	return s.run(ctx, "foreach", false, func(tx *Tx) error { return tx.ForEach(fn) })
}

// Schema returns the table's fields in order.
func (s *Store) Schema(ctx context.Context) (fields []Field, err error) {
	err = s.run(ctx, "schema", false, func(tx *Tx) error {
		fields = tx.Schema()
		return nil
	})
	return fields, err
}

// AddField adds a field after the field named after ("" = at the end). No
// record is rewritten: records written before read back f.Default.
func (s *Store) AddField(ctx context.Context, f Field, after string) error {
	return s.run(ctx, "add-field", true, func(tx *Tx) error {
		sch := tx.sch.clone()
		if err := sch.addField(f, after); err != nil {
			return err
		}
		tx.setSchema(sch)
		if f.Indexed || f.Unique {
			return tx.createIndex(f.Name, f.Unique, nil)
		}
		return nil
	})
}

// DropField removes a field. Its values stay in old records until they are
// rewritten but can never be read again, even by a later field of the same
// name (values are keyed by a field number that is never reused). A field
// with an index loses its index.
func (s *Store) DropField(ctx context.Context, name string) error {
	return s.run(ctx, "drop-field", true, func(tx *Tx) error {
		sch := tx.sch.clone()
		if sch.index(name) != nil {
			if err := tx.dropIndex(name); err != nil {
				return err
			}
			sch = tx.sch.clone()
		}
		if err := sch.dropField(name); err != nil {
			return err
		}
		tx.setSchema(sch)
		return nil
	})
}

// SetDefault changes (persistently) the default of a field: the value that
// inserts without it, and records that never stored it, get.
func (s *Store) SetDefault(ctx context.Context, name string, v any) error {
	return s.run(ctx, "set-default", true, func(tx *Tx) error {
		sch := tx.sch.clone()
		f, err := sch.field(name)
		if err != nil {
			return err
		}
		if f.Default, err = f.defaultValue(v); err != nil {
			return err
		}
		tx.setSchema(sch)
		// Records that never stored the field now read the new default:
		// their index entries must follow.
		return tx.rebuildIndex(name)
	})
}

// setSchema replaces the transaction's schema; Commit persists it.
func (tx *Tx) setSchema(sch *schema) {
	tx.sch = sch
	tx.schemaChanged = true
}

// Stats describes a store at one instant.
type Stats struct {
	Path          string        // the database file
	Records       int           // number of records
	FileSize      int64         // bytes on disk
	FormatVersion int           // on-disk format version
	Schema        []Field       // fields in order
	NextID        uint64        // the ID the next Insert gets
	LastLockWait  time.Duration // how long this handle's last lock acquisition waited
	Created       time.Time     // when the store was created
}

// Stats returns the store's size, count and schema, under the shared lock.
func (s *Store) Stats(ctx context.Context) (st Stats, err error) {
	err = s.run(ctx, "stats", false, func(tx *Tx) error {
		st.Path = s.path
		st.Records = int(u64(tx.meta.Get(keyCount)))
		st.FormatVersion = FormatVersion
		st.Schema = tx.sch.public()
		st.NextID = tx.records.Sequence() + 1
		st.FileSize = tx.btx.Size()
		st.Created, _ = time.Parse(time.RFC3339Nano, string(tx.meta.Get(keyCreated)))
		return nil
	})
	st.LastLockWait = time.Duration(s.lastWait.Load())
	return st, err
}

func (s *Store) logf(level slog.Level, msg string, args ...any) {
	if s.log != nil {
		s.log.Log(context.Background(), level, msg, append([]any{"store", s.path}, args...)...)
	}
}

// syncDir fsyncs a directory so a created or renamed entry is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return classifyIOError(err)
	}
	defer d.Close()
	// Some file systems (and Windows) cannot sync a directory; the rename
	// is then as durable as the platform makes it.
	if err := d.Sync(); err != nil && runtime.GOOS != "windows" &&
		!errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return classifyIOError(err)
	}
	return nil
}

func isPermission(err error) bool { return errors.Is(err, fs.ErrPermission) }
func isReadOnlyFS(err error) bool { return errors.Is(err, syscall.EROFS) }

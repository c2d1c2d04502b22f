// Package lock is the cross-process lock of a psbase store.
//
// Every Store operation runs under a system-wide read/write lock on the file
// <db>.lock (never on the bbolt file itself: bbolt flocks its own file on its
// own descriptor, and a second flock on it from this process makes bolt.Open
// time out or hang). Reads take the lock shared, writes exclusive; there are no
// upgrades or downgrades, because flock(2) converts a lock by dropping it first.
//
// The lock is three layers, always taken in this order and released in reverse:
//
//  1. an in-process, context-aware RW lock (procLock) keyed by the lock file's
//     identity, shared by every File of the process;
//  2. with the turnstile protocol, an exclusive flock on the gate file
//     <db>.gate: a reader holds it only while passing to the data lock, a
//     writer from before it waits for the data lock until it releases it;
//  3. the flock on <db>.lock itself, on an open file description of its own.
//
// LOCKING.md, at the root of the module, describes the protocol; the
// numbered traps (T1..T22) in this package refer to its catalogue.
//
// The package does not know the root package psbase. Its errors wrap its
// own sentinels (ErrTimeout, ErrUnsafePath, ...), which have the texts of
// psbase's and which psbase maps to its own where it calls in (locks.go);
// Holder and TimeoutError are psbase.LockHolder and psbase.LockTimeoutError
// field for field.
package lock

// May touch: <db>.lock and <db>.gate only (see lockfile.go for the rules).

// lock.go: the lock of one store (File), one acquisition through its three
// layers (Acquire) and what it grants (Grant).

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
)

// Config comes from the Store's options.
type Config struct {
	FileMode       os.FileMode  // mode for creating the lock file(s); default 0o644 if zero
	AllowNetworkFS bool         // allow NFS/SMB/FUSE etc. (otherwise refuse with ErrUnsupportedFS)
	Logger         *slog.Logger // may be nil: no logging
	Protocol       Protocol     // protoDefault chooses defaultProtocol
}

// File is the cross-process RW lock of one store. It holds no open file
// between acquisitions: every acquisition opens its own file description (T4),
// so a File is safe for concurrent use by many goroutines, and many
// Files on one path in one process exclude each other through the
// in-process registry.
type File struct {
	db       string // the store's database file (absolute, resolved)
	path     string // the lock file, <db>.lock (absolute)
	gatePath string // the turnstile gate, <db>.gate (absolute)
	mode     os.FileMode
	proto    Protocol // resolved: never protoDefault
	log      *slog.Logger
	host     string

	// key caches the identity of the lock file (prepare's stat) and
	// gateReady that the gate file exists, so the fast path does not look
	// the paths up on every acquisition. Both are reset when the re-check
	// after locking finds the file replaced (Destroy), so they are hints:
	// correctness rests on the re-check.
	key       atomic.Pointer[fileKey]
	gateReady atomic.Bool

	// dbOwner caches the uid of the database file's owner (-1 unknown),
	// one of the owners a lock file may have (checkLockFile).
	dbOwner atomic.Int64

	// noRecheck disables the flopen re-check after locking. Tests only: it
	// is the negative control showing why the re-check is needed (T2).
	noRecheck bool
	// noDrain skips lockKernel's wait for an abandoned kernel wait (the
	// negative control of TestAbandonedWaitGoesFirst). Tests only.
	noDrain bool
	// FollowLinks opens lock files as psbase once did: by path, following
	// links, blocking, unchecked, the record written through the path.
	// A test knob, exported for the root package's tests only (set before
	// the File is used): the negative control of T18 and T19.
	FollowLinks bool
}

// New prepares the lock for the store at dbPath; the lock file is
// dbPath+".lock". It refuses, with an error wrapping ErrUnsupportedFS, a
// directory on a network or FUSE file system unless cfg.AllowNetworkFS (T12).
// It creates no file. A missing directory is an error wrapping fs.ErrNotExist.
func New(dbPath string, cfg Config) (*File, error) {
	abs, err := filepath.Abs(dbPath)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dbPath, err)
	}
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: directory: %w", abs+".lock", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("lock %s: %s is not a directory", abs+".lock", dir)
	}
	if name, unsafe := checkFS(dir); unsafe {
		if !cfg.AllowNetworkFS {
			return nil, fmt.Errorf("%w: %s is on %s, whose file locks can be lost, faked or hang; move the store to a local disk or allow network file systems explicitly",
				ErrUnsupportedFS, dir, name)
		}
		if cfg.Logger != nil {
			cfg.Logger.Warn("psbase: store on a network file system; its file locks may not be reliable", "dir", dir, "fs", name)
		}
	}
	mode := cfg.FileMode.Perm()
	if mode == 0 {
		mode = 0o644
	}
	host, _ := os.Hostname()
	l := &File{
		db:       abs,
		path:     abs + ".lock",
		gatePath: abs + ".gate",
		mode:     mode,
		proto:    cfg.Protocol.resolve(),
		log:      cfg.Logger,
		host:     host,
	}
	l.dbOwner.Store(-1)
	return l, nil
}

// Release releases the lock. It must be called exactly once; further calls
// are no-ops.
func (g *Grant) Release() { g.release() }

// Grant is one held acquisition.
type Grant struct {
	release func() // exactly once; further calls are no-ops
	l       *File
	h       *held
}

// StillHeld reports, with an error wrapping ErrUnknownOutcome, that the lock
// file this grant holds is no longer the one at its path (a tmp cleaner or a
// person deleted or replaced it while it was held): a process that came
// since locked another file, so the hold excluded nobody. A writer checks
// it after committing, before acknowledging (T20).
func (g *Grant) StillHeld() error {
	fi, err := g.h.data.Stat()
	if err == nil && linkCount(fi) > 0 {
		var pfi os.FileInfo
		if pfi, err = os.Lstat(g.l.path); err == nil && keyOf(g.l.path, pfi) == keyOf(g.l.path, fi) {
			return nil
		}
	}
	return fmt.Errorf("%w: the lock file %s was deleted or replaced while this process held it, so other processes may have run at the same time", ErrUnknownOutcome, g.l.path)
}

// Acquire blocks until the lock is held in the wanted mode or ctx is done.
// op names the operation for diagnostics. On ctx done it returns at once a
// *TimeoutError; a kernel wait still in progress is abandoned to a helper
// goroutine that drops the lock as soon as it gets it (T10). The grant's
// Release must be called exactly once; further calls are no-ops. waited is
// the time spent waiting. mayCreate allows creating the lock files when the
// database file does not exist (Create); otherwise a missing store is
// ErrNotExist and no file is created (T22).
func (l *File) Acquire(ctx context.Context, exclusive bool, op string, mayCreate bool) (grant *Grant, waited time.Duration, err error) {
	return l.acquireMode(ctx, exclusive, op, mayCreate)
}

// TryAcquire takes the lock only if it can without waiting, in this
// process and in the kernel: ok is false (and err nil) when it is busy, or
// when an abandoned wait of this process is still queued for it (T23). The
// lock files must exist (the store does).
func (l *File) TryAcquire(exclusive bool, op string) (grant *Grant, ok bool, err error) {
	grant, _, err = l.acquireMode(context.WithValue(context.Background(), noWaitKey{}, true), exclusive, op, false)
	if errors.Is(err, errBusy) {
		return nil, false, nil
	}
	return grant, err == nil, err
}

// noWaitKey marks TryAcquire's context: every wait becomes errBusy.
type noWaitKey struct{}

func noWait(ctx context.Context) bool { return ctx.Value(noWaitKey{}) != nil }

// errBusy: TryAcquire would have had to wait.
var errBusy = errors.New("lock busy")

func (l *File) acquireMode(ctx context.Context, exclusive bool, op string, mayCreate bool) (grant *Grant, waited time.Duration, err error) {
	start := time.Now()
	// With protoExclusiveOnly readers are writers, in-process too.
	excl := exclusive || l.proto == protoExclusiveOnly
	for {
		if ctx.Err() != nil {
			return nil, time.Since(start), l.timeoutError(ctx, exclusive, op, start)
		}
		var key fileKey
		if k := l.key.Load(); k != nil {
			key = *k
		} else {
			if key, err = l.prepare(l.path, mayCreate); err != nil {
				return nil, time.Since(start), err
			}
			l.key.Store(&key)
		}
		pl := procLocks.get(key)
		if noWait(ctx) {
			if !pl.tryLock(excl) {
				procLocks.put(pl)
				return nil, 0, errBusy
			}
		} else if err := pl.lock(ctx, excl); err != nil {
			procLocks.put(pl)
			return nil, time.Since(start), l.timeoutError(ctx, exclusive, op, start)
		}
		h, err := l.lockKernel(ctx, pl, key, excl, mayCreate)
		if err != nil {
			pl.unlock(excl)
			procLocks.put(pl)
			if errors.Is(err, errStale) {
				// The lock file was removed and recreated (Destroy) since
				// we learnt its identity: start again on the new file.
				l.Forget()
				continue
			}
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil, time.Since(start), l.timeoutError(ctx, exclusive, op, start)
			}
			return nil, time.Since(start), err
		}
		waited = time.Since(start)
		if excl {
			h.recordLater(l, op, start)
		}
		if l.log != nil && l.log.Enabled(ctx, slog.LevelDebug) {
			msg := "psbase: lock acquired"
			if waited >= slowWait {
				msg = "psbase: lock acquired after a long wait"
			}
			l.log.DebugContext(ctx, msg, "path", l.path, "op", op, "exclusive", exclusive,
				"protocol", l.proto.String(), "waited", waited)
		}
		var once sync.Once
		release := func() {
			once.Do(func() {
				// h (and the *os.File inside it) stays reachable through this
				// closure until release: a finalizer on an unreachable locked
				// file would close it and silently unlock (T13).
				if err := h.unlock(); err != nil && l.log != nil {
					l.log.Debug("psbase: lock release", "path", l.path, "op", op, "err", err)
				}
				pl.unlock(excl)
				procLocks.put(pl)
			})
		}
		return &Grant{release: release, l: l, h: h}, waited, nil
	}
}

// slowWait is the wait after which Acquire logs "after a long wait".
const slowWait = 100 * time.Millisecond

// RemoveFiles removes the lock file and the gate file. The caller must hold
// the lock exclusively (Store.Destroy). Waiters blocked on the removed inodes
// are not lost: every acquisition re-checks after locking that the file it
// locked is still the one at the path, and starts over if not (T2).
// On Windows a file that is open (as the caller's own lock file is) cannot
// be removed: there the files stay, which is harmless, and no error is
// returned for them.
func (l *File) RemoveFiles() error {
	var errs []error
	for _, p := range []string{l.gatePath, l.path} {
		err := os.Remove(p)
		switch {
		case err == nil, errors.Is(err, fs.ErrNotExist):
		case fileBusy(err):
			if l.log != nil {
				l.log.Debug("psbase: lock file in use, not removed", "path", p, "err", err)
			}
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// timeoutError builds the *TimeoutError for an abandoned acquisition,
// naming the holders the OS reports (T15).
// Timeout is the error of an acquisition for op that began at start and
// whose ctx ended: a *TimeoutError naming the lock's holders now. Group
// commit's submitters, which wait for a combiner rather than in Acquire,
// report their deadline with it.
func (l *File) Timeout(ctx context.Context, exclusive bool, op string, start time.Time) error {
	return l.timeoutError(ctx, exclusive, op, start)
}

func (l *File) timeoutError(ctx context.Context, exclusive bool, op string, start time.Time) error {
	waited := time.Since(start)
	holders, _ := Holders(l.path)
	return &TimeoutError{
		Path:      l.path,
		Op:        op,
		Exclusive: exclusive,
		Waited:    waited,
		Holders:   holders,
		Err:       ctx.Err(),
	}
}

// Forget drops what l caches about its files (the lock file's identity,
// that the gate exists), so that the next acquisition looks them up again,
// as a process that has never seen them does. Acquire calls it when the
// lock file was replaced; the root package's tests call it (a test knob)
// to make a Store arrive like another process would.
func (l *File) Forget() {
	l.key.Store(nil)
	l.gateReady.Store(false)
}

// errStale reports that the file we locked is no longer the one at the path.
var errStale = errors.New("lock file was replaced")

package psbase

// The cross-process lock of a store.
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
//     identity, shared by every fileLock of the process;
//  2. with the turnstile protocol, an exclusive flock on the gate file
//     <db>.gate: a reader holds it only while passing to the data lock, a
//     writer from before it waits for the data lock until it releases it;
//  3. the flock on <db>.lock itself, on an open file description of its own.
//
// LOCKING.md describes the protocol; the numbered traps (T1..T22) below
// refer to its catalogue.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofrs/flock"
)

// lockConfig comes from the Store's options.
type lockConfig struct {
	FileMode       os.FileMode  // mode for creating the lock file(s); default 0o644 if zero
	AllowNetworkFS bool         // allow NFS/SMB/FUSE etc. (otherwise refuse with ErrUnsupportedFS)
	Logger         *slog.Logger // may be nil: no logging
	Protocol       lockProtocol // protoDefault chooses defaultProtocol
}

// lockProtocol selects how shared and exclusive holders queue.
type lockProtocol int

const (
	// protoDefault is defaultProtocol.
	protoDefault lockProtocol = iota
	// protoTurnstile: every acquisition first takes an exclusive flock on the
	// gate file <db>.gate, then the data lock in the wanted mode, then drops
	// the gate. A writer keeps the gate while it waits for the readers in
	// front of it to leave, so no new reader can slip past it (T8).
	protoTurnstile
	// protoExclusiveOnly: every acquisition, read or write, is exclusive.
	// Simple and starvation-free (kernel FIFO), but readers never overlap.
	protoExclusiveOnly
	// protoPlain: plain shared/exclusive flock with no anti-starvation.
	// Linux grants a new LOCK_SH while a LOCK_EX waits, so a stream of
	// readers starves writers. It exists ONLY as a negative control for tests.
	protoPlain
)

// defaultProtocol is the measured choice (TestLockWriterStarvation; Linux 6.x,
// 2 cores, go test -race, 8 reader processes each looping {shared lock, hold
// 3 ms, release}, one writer timing 5 exclusive acquisitions, 3 runs):
//
//	protocol        writer wait median / max        reader acquisitions/s (8 procs)
//	plain           ≥ 1 s: 5/5 gave up at 1 s       ~2,430–2,490  (writer starved)
//	turnstile       3.1–3.6 ms / 3.4–4.8 ms         ~2,300–2,450
//	exclusive-only  27–37 ms / 32–42 ms             ~  370–  400
//
// The turnstile bounds a writer's wait to about one reader hold time and
// keeps readers overlapping (reads/s within ~5% of plain); exclusive-only
// also bounds it, but serializes readers (~6x fewer reads/s here) and makes a
// writer wait behind the whole queue. The price of the turnstile is one more
// open and two more flock calls per acquisition (BenchmarkLockAcquire,
// uncontended: shared 21 µs vs 12 µs plain), small against a bbolt open and
// transaction (≥ 30 µs, ~300 µs with its syncs).
const defaultProtocol = protoTurnstile

func (p lockProtocol) resolve() lockProtocol {
	if p == protoDefault {
		return defaultProtocol
	}
	return p
}

func (p lockProtocol) String() string {
	switch p {
	case protoDefault:
		return "default(" + defaultProtocol.String() + ")"
	case protoTurnstile:
		return "turnstile"
	case protoExclusiveOnly:
		return "exclusive-only"
	case protoPlain:
		return "plain"
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

// fileLock is the cross-process RW lock of one store. It holds no open file
// between acquisitions: every acquisition opens its own file description (T4),
// so a fileLock is safe for concurrent use by many goroutines, and many
// fileLocks on one path in one process exclude each other through the
// in-process registry.
type fileLock struct {
	db       string // the store's database file (absolute, resolved)
	path     string // the lock file, <db>.lock (absolute)
	gatePath string // the turnstile gate, <db>.gate (absolute)
	mode     os.FileMode
	proto    lockProtocol // resolved: never protoDefault
	log      *slog.Logger
	host     string

	// key caches the identity of the lock file (prepare's stat) and
	// gateReady that the gate file exists, so the fast path does not look
	// the paths up on every acquisition. Both are reset when the re-check
	// after locking finds the file replaced (Destroy), so they are hints:
	// correctness rests on the re-check.
	key       atomic.Pointer[lockKey]
	gateReady atomic.Bool

	// dbOwner caches the uid of the database file's owner (-1 unknown),
	// one of the owners a lock file may have (checkLockFile).
	dbOwner atomic.Int64

	// noRecheck disables the flopen re-check after locking. Tests only: it
	// is the negative control showing why the re-check is needed (T2).
	noRecheck bool
	// followLinks opens lock files as psbase once did: by path, following
	// links, blocking, unchecked, the record written through the path.
	// Tests only: the negative control of T18 and T19.
	followLinks bool
}

// newFileLock prepares the lock for the store at dbPath; the lock file is
// dbPath+".lock". It refuses, with an error wrapping ErrUnsupportedFS, a
// directory on a network or FUSE file system unless cfg.AllowNetworkFS (T12).
// It creates no file. A missing directory is an error wrapping fs.ErrNotExist.
func newFileLock(dbPath string, cfg lockConfig) (*fileLock, error) {
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
	if name, unsafe := lockCheckFS(dir); unsafe {
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
	l := &fileLock{
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

// acquire blocks until the lock is held in the wanted mode or ctx is done.
// op names the operation for diagnostics. On ctx done it returns at once a
// *LockTimeoutError; a kernel wait still in progress is abandoned to a helper
// goroutine that drops the lock as soon as it gets it (T10). release must be
// called exactly once; further calls are no-ops. waited is the time spent
// waiting.
func (l *fileLock) acquire(ctx context.Context, exclusive bool, op string) (release func(), waited time.Duration, err error) {
	g, waited, err := l.acquireHeld(ctx, exclusive, op, true)
	if err != nil {
		return nil, waited, err
	}
	return g.release, waited, nil
}

// lockGrant is one held acquisition.
type lockGrant struct {
	release func() // exactly once; further calls are no-ops
	l       *fileLock
	h       *lockHeld
}

// stillHeld reports, with an error wrapping ErrUnknownOutcome, that the lock
// file this grant holds is no longer the one at its path (a tmp cleaner or a
// person deleted or replaced it while it was held): a process that came
// since locked another file, so the hold excluded nobody. A writer checks
// it after committing, before acknowledging (T20).
func (g *lockGrant) stillHeld() error {
	fi, err := g.h.data.Stat()
	if err == nil && lockLinkCount(fi) > 0 {
		var pfi os.FileInfo
		if pfi, err = os.Lstat(g.l.path); err == nil && lockKeyOf(g.l.path, pfi) == lockKeyOf(g.l.path, fi) {
			return nil
		}
	}
	return fmt.Errorf("%w: the lock file %s was deleted or replaced while this process held it, so other processes may have run at the same time", ErrUnknownOutcome, g.l.path)
}

// acquireHeld is acquire, returning the grant. mayCreate allows creating the
// lock files when the database file does not exist (Create); otherwise a
// missing store is ErrNotExist and no file is created (T22).
func (l *fileLock) acquireHeld(ctx context.Context, exclusive bool, op string, mayCreate bool) (grant *lockGrant, waited time.Duration, err error) {
	start := time.Now()
	// With protoExclusiveOnly readers are writers, in-process too.
	excl := exclusive || l.proto == protoExclusiveOnly
	for {
		if ctx.Err() != nil {
			return nil, time.Since(start), l.timeoutError(ctx, exclusive, op, start)
		}
		var key lockKey
		if k := l.key.Load(); k != nil {
			key = *k
		} else {
			if key, err = l.prepare(l.path, mayCreate); err != nil {
				return nil, time.Since(start), err
			}
			l.key.Store(&key)
		}
		pl := procLocks.get(key)
		if err := pl.lock(ctx, excl); err != nil {
			procLocks.put(pl)
			return nil, time.Since(start), l.timeoutError(ctx, exclusive, op, start)
		}
		h, err := l.lockKernel(ctx, pl, key, excl, mayCreate)
		if err != nil {
			pl.unlock(excl)
			procLocks.put(pl)
			if errors.Is(err, errLockStale) {
				// The lock file was removed and recreated (Destroy) since
				// we learnt its identity: start again on the new file.
				l.key.Store(nil)
				l.gateReady.Store(false)
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
			if waited >= lockSlowWait {
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
		return &lockGrant{release: release, l: l, h: h}, waited, nil
	}
}

// lockSlowWait is the wait after which acquire logs "after a long wait".
const lockSlowWait = 100 * time.Millisecond

// removeFiles removes the lock file and the gate file. The caller must hold
// the lock exclusively (Store.Destroy). Waiters blocked on the removed inodes
// are not lost: every acquisition re-checks after locking that the file it
// locked is still the one at the path, and starts over if not (T2).
// On Windows a file that is open (as the caller's own lock file is) cannot
// be removed: there the files stay, which is harmless, and no error is
// returned for them.
func (l *fileLock) removeFiles() error {
	var errs []error
	for _, p := range []string{l.gatePath, l.path} {
		err := os.Remove(p)
		switch {
		case err == nil, errors.Is(err, fs.ErrNotExist):
		case lockFileBusy(err):
			if l.log != nil {
				l.log.Debug("psbase: lock file in use, not removed", "path", p, "err", err)
			}
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// timeoutError builds the *LockTimeoutError for an abandoned acquisition,
// naming the holders the OS reports (T15).
func (l *fileLock) timeoutError(ctx context.Context, exclusive bool, op string, start time.Time) error {
	waited := time.Since(start)
	holders, _ := lockHolders(l.path)
	return &LockTimeoutError{
		Path:      l.path,
		Op:        op,
		Exclusive: exclusive,
		Waited:    waited,
		Holders:   holders,
		Err:       ctx.Err(),
	}
}

// errLockStale reports that the file we locked is no longer the one at the path.
var errLockStale = errors.New("lock file was replaced")

// prepare makes sure the lock file at path exists and returns its identity.
// An existing file must pass checkLockFile. A missing one is created only
// when the store exists or mayCreate (T22), with O_CREATE|O_EXCL (which
// never follows a link) and then chmod'ed to l.mode, so the umask cannot take
// away the group write bit that a store shared between users needs (T3);
// root gives it the store's owner, so that root running maintenance does not
// lock the owner out. It never truncates and never writes.
func (l *fileLock) prepare(path string, mayCreate bool) (lockKey, error) {
	for range 10 {
		fi, err := os.Lstat(path)
		if l.followLinks {
			fi, err = os.Stat(path)
		}
		if err == nil {
			if err := l.checkLockFile(path, fi); err != nil {
				return lockKey{}, err
			}
			return lockKeyOf(path, fi), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return lockKey{}, l.openError(path, false, err)
		}
		dfi, err := os.Lstat(l.db)
		if errors.Is(err, fs.ErrNotExist) && !mayCreate {
			return lockKey{}, fmt.Errorf("%w: no store at %s", ErrNotExist, l.db)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|openNoFollow, l.mode)
		if err == nil {
			_ = f.Chmod(l.mode)
			if dfi != nil && os.Geteuid() == 0 {
				if uid, gid, ok := fileOwner(dfi); ok && uid != 0 {
					_ = f.Chown(uid, gid)
				}
			}
			_ = f.Close()
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return lockKey{}, l.openError(path, true, err)
		}
	}
	return lockKey{}, fmt.Errorf("lock file %s keeps disappearing (something deletes it as soon as it is created)", path)
}

// checkLockFile refuses (ErrUnsafePath) a lock or gate file that is not a
// regular file with one name, owned by the store's owner, the caller or root
// (T18, T19): psbase writes its holder record into the lock file, so a
// symbolic or hard link there would aim that write at another file, and a
// FIFO or device could block an open or a read. fi is from lstat or fstat.
func (l *fileLock) checkLockFile(path string, fi os.FileInfo) error {
	if l.followLinks {
		return nil
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: lock file %s is a symbolic link; psbase never follows one there (remove it)", ErrUnsafePath, path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: lock file %s is not a regular file (%s); remove it", ErrUnsafePath, path, fi.Mode().Type())
	case lockLinkCount(fi) > 1:
		return fmt.Errorf("%w: lock file %s has %d names (a hard link to another file?); remove it", ErrUnsafePath, path, lockLinkCount(fi))
	}
	uid, _, ok := fileOwner(fi)
	if !ok || uid == 0 || uid == os.Geteuid() {
		return nil
	}
	owner := l.dbOwner.Load()
	if owner != int64(uid) {
		if dfi, err := os.Lstat(l.db); err == nil {
			if du, _, ok := fileOwner(dfi); ok {
				owner = int64(du)
				l.dbOwner.Store(owner)
			}
		}
	}
	if owner == int64(uid) {
		return nil
	}
	return fmt.Errorf("%w: lock file %s belongs to uid %d, neither the store's owner nor this user nor root; remove it", ErrUnsafePath, path, uid)
}

// openError classifies an error from creating (creating) or opening a lock
// file: no permission or a read-only file system wraps ErrReadOnly.
func (l *fileLock) openError(path string, creating bool, err error) error {
	if lockReadOnlyErr(err) {
		if creating {
			return fmt.Errorf("%w: cannot create lock file %s: the directory is not writable (a store there can be read once its lock file exists, not created or written): %w",
				ErrReadOnly, path, err)
		}
		return fmt.Errorf("%w: lock file %s is not writable (writes need write access to the store's files): %w",
			ErrReadOnly, path, err)
	}
	return fmt.Errorf("lock file %s: %w", path, err)
}

// lockErr classifies an error from flock itself (T11). EWOULDBLOCK never gets
// here (it is contention, handled by the callers) and EINTR is retried.
func lockErr(path string, err error) error {
	if lockUnsupportedErr(err) {
		return fmt.Errorf("%w: flock on %s: %w", ErrUnsupportedFS, path, err)
	}
	return fmt.Errorf("flock %s: %w", path, err)
}

// lockHeld is one acquisition's kernel locks: the flock on the data lock file,
// a writer's turnstile gate, and the descriptor of the holder record.
type lockHeld struct {
	data *flock.Flock
	gate *flock.Flock // a writer's turnstile gate, released after data

	mu    sync.Mutex  // guards the fields below against the record timer
	timer *time.Timer // writes the holder record if the hold lasts
	done  bool        // released: the timer must not write any more
	rec   *os.File    // the record's descriptor, once written
}

// lockRecordDelay is how long an exclusive hold lasts before its holder
// record is written. Writing it on every acquisition cost a pwrite and two
// truncates of the lock file per operation — about 100 µs on a durable
// insert, as the lock file's metadata rides along with the database's
// fdatasync in the file system's journal. Holds shorter than this are gone
// before anyone could ask; on Linux /proc/locks names every holder's pid
// anyway. The record matters for the long holds: a stuck or stopped holder,
// a large transaction.
const lockRecordDelay = 20 * time.Millisecond

// recordLater arranges for the holder record to be written if the exclusive
// hold is still on after lockRecordDelay.
func (h *lockHeld) recordLater(l *fileLock, op string, since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.timer = time.AfterFunc(lockRecordDelay, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.done {
			h.writeRecord(l, op, since)
		}
	})
}

// lockKernel takes the kernel lock(s) for pl's file in the wanted mode.
func (l *fileLock) lockKernel(ctx context.Context, pl *procLock, key lockKey, excl, mayCreate bool) (*lockHeld, error) {
	var gate *flock.Flock
	if l.proto == protoTurnstile {
		var err error
		if !l.gateReady.Load() {
			if _, err = l.prepare(l.gatePath, mayCreate); err == nil {
				l.gateReady.Store(true)
			}
		}
		switch {
		case err == nil:
			// The gate is only ever taken exclusively and never written, so a
			// read-only descriptor is enough when we cannot write it.
			if gate, err = l.lockFile(ctx, pl, l.gatePath, nil, true, true); err != nil {
				return nil, err
			}
		case !excl && errors.Is(err, ErrReadOnly):
			// A reader in a directory it cannot write, with no gate file:
			// no writer has been through a gate here either (it would have
			// created it), so pass without one rather than fail the read.
		default:
			return nil, err
		}
	}
	data, err := l.lockFile(ctx, pl, l.path, &key, excl, !excl)
	if gate != nil && (err != nil || !excl) {
		// A reader is through the turnstile: let the next one in.
		if uerr := gate.Unlock(); uerr != nil && err == nil {
			_ = data.Unlock()
			return nil, lockErr(l.gatePath, uerr)
		}
		gate = nil
	}
	if err != nil {
		return nil, err
	}
	// A writer keeps the gate until it releases the data lock. It has held
	// the gate while the readers ahead of it left, so no new reader slipped
	// in (T8); keeping it to the end makes the gate the only queue writers
	// wait in: the next writer, woken when this one leaves, finds the data
	// lock free at once. Releasing the gate as soon as the data lock was
	// taken woke each queued writer twice (gate, then data), which doubled
	// the lock's CPU cost in a write storm.
	return &lockHeld{data: data, gate: gate}, nil
}

// lockFile locks path on a new open file description: first a non-blocking
// try, then, when contended, a blocking kernel wait (T9) in a helper
// goroutine so that ctx can abandon it (T10). After locking it re-checks that
// the locked file is still the one at path (and, when want is not nil, the
// file the in-process lock is keyed by), FreeBSD flopen(3) style (T2).
// readOnlyOK allows falling back to an O_RDONLY descriptor when the file
// exists but is not writable by us.
func (l *fileLock) lockFile(ctx context.Context, pl *procLock, path string, want *lockKey, excl, readOnlyOK bool) (*flock.Flock, error) {
	// No O_CREATE: prepare made the file; O_NOFOLLOW|O_NONBLOCK: a link or
	// FIFO put there since is refused below, never followed or waited on.
	flags := os.O_RDWR | openNoFollow
	if l.followLinks {
		flags = os.O_RDWR | os.O_CREATE
	}
	for {
		f := flock.New(path, flock.SetFlag(flags), flock.SetPermissions(l.mode))
		ok, err := lockTry(f, excl)
		if err != nil && readOnlyOK && flags&os.O_RDWR != 0 && lockReadOnlyErr(err) {
			flags = os.O_RDONLY | openNoFollow
			if l.followLinks {
				flags = os.O_RDONLY
			}
			continue
		}
		if err == nil && !ok {
			err = l.waitLock(ctx, pl, f, excl)
			if err != nil && !isOpenError(err) {
				return nil, err
			}
		}
		if err != nil {
			switch {
			case !isOpenError(err):
				return nil, lockErr(path, err)
			case errors.Is(err, fs.ErrNotExist):
				// Removed since prepare (Destroy, a tmp cleaner): start over.
				return nil, errLockStale
			}
			// A link, a directory... put there since prepare looked.
			if fi, lerr := os.Lstat(path); lerr == nil {
				if cerr := l.checkLockFile(path, fi); cerr != nil {
					return nil, cerr
				}
			}
			return nil, l.openError(path, false, err)
		}
		if l.noRecheck {
			return f, nil
		}
		same, key, err := l.lockSameFile(f, path)
		if err != nil {
			_ = f.Unlock()
			return nil, err
		}
		if !same || (want != nil && key != *want) {
			_ = f.Unlock()
			if want != nil {
				// Re-key the in-process lock too: leave and start over.
				return nil, errLockStale
			}
			continue
		}
		return f, nil
	}
}

// isOpenError reports an error of opening the file (not of locking it).
func isOpenError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Op == "open"
}

// lockTry is one non-blocking attempt; EWOULDBLOCK is (false, nil).
// gofrs/flock opens the file in TryLock and closes it again on failure.
func lockTry(f *flock.Flock, excl bool) (bool, error) {
	for {
		var ok bool
		var err error
		if excl {
			ok, err = f.TryLock()
		} else {
			ok, err = f.TryRLock()
		}
		if lockIsEINTR(err) {
			continue
		}
		return ok, err
	}
}

// lockBlock waits in the kernel until f is locked. Blocked flock waiters are
// woken in arrival order, unlike polling (T9).
func lockBlock(f *flock.Flock, excl bool) error {
	for {
		var err error
		if excl {
			err = f.Lock()
		} else {
			err = f.RLock()
		}
		if !lockIsEINTR(err) {
			return err
		}
	}
}

// waitLock blocks until f is locked or ctx is done. A blocked flock cannot be
// interrupted (SA_RESTART; closing the descriptor does not wake it), so the
// wait runs in a helper goroutine. At most one goroutine per lock file and
// process waits in the kernel: the others wait for pl's kernel-wait token in
// Go, where ctx can stop them, and do not pin an OS thread each.
func (l *fileLock) waitLock(ctx context.Context, pl *procLock, f *flock.Flock, excl bool) error {
	if err := pl.waitToken(ctx); err != nil {
		return err
	}
	// The helper may outlive this call: keep pl registered (and with it the
	// token) until it is done.
	procLocks.ref(pl)
	res := make(chan error) // unbuffered: a send succeeds only if we still listen
	go func() {
		defer procLocks.put(pl)
		defer pl.releaseToken()
		err := lockBlock(f, excl)
		select {
		case res <- err:
		case <-ctx.Done():
			// Abandoned: nobody will use this lock. Drop it at once.
			if err == nil {
				_ = f.Unlock()
			}
		}
	}()
	select {
	case err := <-res:
		if err != nil && !isOpenError(err) {
			return lockErr(f.Path(), err)
		}
		return err // an open error is the caller's to classify
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lockSameFile reports whether the file f has locked is still linked
// (nlink > 0 on fstat(fd)), and returns its identity. psbase removes lock
// files only by unlinking them (removeFiles), and an unlinked inode keeps
// nlink 0 forever, so a waiter that wakes up holding a removed file sees it
// here without a second lookup of the path; a newcomer that opened the
// recreated file sees a different identity than the in-process lock's key
// (the caller's want). One fstat instead of fstat+stat per acquisition keeps
// the hot path short. The same fstat shows what was opened: a file that
// fails checkLockFile is refused (ErrUnsafePath). gofrs' Locked() flags are
// not consulted (T5): the kernel holds the truth and we only ever hold a lock
// we just took.
func (l *fileLock) lockSameFile(f *flock.Flock, path string) (bool, lockKey, error) {
	fdInfo, err := f.Stat() // fstat on the locked descriptor
	if err != nil {
		return false, lockKey{}, fmt.Errorf("lock file %s: %w", path, err)
	}
	if lockLinkCount(fdInfo) == 0 {
		return false, lockKey{}, nil
	}
	if err := l.checkLockFile(path, fdInfo); err != nil {
		return false, lockKey{}, err
	}
	return true, lockKeyOf(path, fdInfo), nil
}

func (h *lockHeld) unlock() error {
	var errs []error
	h.mu.Lock()
	h.done = true
	if h.timer != nil {
		h.timer.Stop()
	}
	defer h.mu.Unlock()
	if h.rec != nil {
		// Empty the record under the lock: an unheld lock file is empty.
		if err := h.rec.Truncate(lockRecordOffset); err != nil {
			errs = append(errs, err)
		}
		if err := h.rec.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := h.data.Unlock(); err != nil { // LOCK_UN and close
		errs = append(errs, err)
	}
	if h.gate != nil {
		if err := h.gate.Unlock(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeRecord writes the holder record "pid=… host=… op=… since=…" into the
// lock file, only ever while holding it exclusively (T3, T15): pwrite then
// truncate to its length (a record left by a killed holder may be longer);
// no fsync, it is a diagnostic. gofrs/flock does not expose its descriptor,
// so the record goes through a second descriptor, opened without following
// links and checked (fstat) to be the file the lock is held on; closing it
// does not drop a flock, which belongs to the other description.
// Best effort: a failure is logged, never returned. h.mu is held.
func (h *lockHeld) writeRecord(l *fileLock, op string, since time.Time) {
	rec := formatLockRecord(LockHolder{PID: os.Getpid(), Host: l.host, Op: op, Since: since, Exclusive: true})
	flags := os.O_WRONLY | openNoFollow
	if l.followLinks {
		flags = os.O_WRONLY
	}
	f, err := os.OpenFile(l.path, flags, 0)
	if err == nil && !l.followLinks {
		// Write only into the very file we hold locked (T18): whatever is
		// at the path now may be something else.
		var held, opened os.FileInfo
		if held, err = h.data.Stat(); err == nil {
			if opened, err = f.Stat(); err == nil && (!opened.Mode().IsRegular() || lockKeyOf(l.path, opened) != lockKeyOf(l.path, held)) {
				err = errLockStale
			}
		}
		if err != nil {
			_ = f.Close()
		}
	}
	if err == nil {
		if _, err = f.WriteAt(rec, lockRecordOffset); err == nil {
			err = f.Truncate(lockRecordOffset + int64(len(rec)))
		}
		if err != nil {
			_ = f.Close()
		} else {
			h.rec = f
		}
	}
	if err != nil && l.log != nil {
		l.log.Debug("psbase: lock holder record not written", "path", l.path, "err", err)
	}
}

// formatLockRecord renders the holder record: one line of key=value fields.
func formatLockRecord(h LockHolder) []byte {
	clean := func(s string) string {
		s = strings.Map(func(r rune) rune {
			if r <= ' ' || r == '=' || r == 0x7f {
				return '_'
			}
			return r
		}, s)
		if s == "" {
			s = "-"
		}
		return s
	}
	return fmt.Appendf(nil, "pid=%d host=%s op=%s since=%s\n",
		h.PID, clean(h.Host), clean(h.Op), h.Since.UTC().Format(time.RFC3339Nano))
}

// parseLockRecord parses a holder record; ok is false for an empty or foreign one.
func parseLockRecord(b []byte) (h LockHolder, ok bool) {
	b = bytes.Trim(b, "\x00 \t\r\n")
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	for _, field := range strings.Fields(string(b)) {
		k, v, found := strings.Cut(field, "=")
		if !found {
			return LockHolder{}, false
		}
		if v == "-" {
			v = ""
		}
		switch k {
		case "pid":
			pid, err := strconv.Atoi(v)
			if err != nil || pid <= 0 {
				return LockHolder{}, false
			}
			h.PID = pid
		case "host":
			h.Host = v
		case "op":
			h.Op = v
		case "since":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err == nil {
				h.Since = t
			}
		}
	}
	if h.PID == 0 {
		return LockHolder{}, false
	}
	h.Exclusive = true
	return h, true
}

// LockHolders reports who holds and who waits for the lock of the store at
// dbPath right now. On Linux it reads /proc/locks (flock entries on the lock
// file's device and inode; waiters are the "->" lines) and each process's
// command line, and merges in the record the exclusive holder wrote into the
// lock file (pid, host, operation, start time). Elsewhere only the record is
// known, and it is reported only while some process holds the lock
// exclusively. On Linux the processes at the turnstile gate are listed too,
// with Gate set. A symbolic link to a store is followed to the real file,
// as Open does. A store without a lock file has no holders; a lock file that
// is not a regular file is an error wrapping ErrUnsafePath.
func LockHolders(dbPath string) ([]LockHolder, error) {
	real, err := resolvePath(dbPath) // the lock files sit beside the real file
	if errors.Is(err, ErrNotExist) || errors.Is(err, ErrUnsafePath) {
		return nil, nil // no store there, so no holders
	}
	if err != nil {
		return nil, err
	}
	return lockHolders(real + ".lock")
}

func lockHolders(lockPath string) ([]LockHolder, error) {
	fi, err := os.Lstat(lockPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: lock file %s is not a regular file (%s)", ErrUnsafePath, lockPath, fi.Mode().Type())
	}
	rec, haveRec := readLockRecord(lockPath)
	sys, ok := lockSystemHolders(fi)
	if !ok {
		if !haveRec || !lockHeldExclusively(lockPath) {
			return nil, nil
		}
		return []LockHolder{rec}, nil
	}
	return mergeGateQueue(mergeLockRecord(sys, rec, haveRec), lockPath), nil
}

// mergeGateQueue adds the processes queued at the turnstile gate: a writer
// waits there until the writer before it is done, and every process in line
// behind a waiting writer waits there too. Each one not already listed for
// the data lock is listed with Gate set: holding the gate, or (Waiting)
// queued for it, always exclusively (readers pass the gate exclusively too,
// briefly).
func mergeGateQueue(holders []LockHolder, lockPath string) []LockHolder {
	gatePath := strings.TrimSuffix(lockPath, ".lock") + ".gate"
	gfi, err := os.Lstat(gatePath)
	if err != nil || !gfi.Mode().IsRegular() {
		return holders
	}
	gate, ok := lockSystemHolders(gfi)
	if !ok {
		return holders
	}
	for _, g := range gate {
		if g.PID > 0 && slices.ContainsFunc(holders, func(h LockHolder) bool { return h.PID == g.PID }) {
			continue // holds (or waits for) the data lock: already listed
		}
		// The one not waiting holds the gate: a writer next in line, which
		// everyone after it waits behind (stopped, it blocks them all, T21).
		g.Gate, g.Exclusive = true, true
		holders = append(holders, g)
	}
	return holders
}

// mergeLockRecord fills the recorded op, host and start time into the exclusive
// holder the OS reports. A record that matches no exclusive holder is stale
// (left by a killed holder) and dropped.
func mergeLockRecord(sys []LockHolder, rec LockHolder, haveRec bool) []LockHolder {
	if !haveRec {
		return sys
	}
	for i := range sys {
		h := &sys[i]
		if h.Waiting || !h.Exclusive || (h.PID > 0 && h.PID != rec.PID) {
			continue
		}
		if h.PID <= 0 { // pid not visible from our pid namespace
			h.PID = rec.PID
		}
		h.Op, h.Host, h.Since = rec.Op, rec.Host, rec.Since
		break
	}
	return sys
}

func readLockRecord(lockPath string) (LockHolder, bool) {
	f, err := os.OpenFile(lockPath, os.O_RDONLY|openNoFollow, 0)
	if err != nil {
		return LockHolder{}, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return LockHolder{}, false
	}
	buf := make([]byte, 512)
	n, err := f.ReadAt(buf, lockRecordOffset)
	if err != nil && err != io.EOF {
		return LockHolder{}, false
	}
	return parseLockRecord(buf[:n])
}

// lockHeldExclusively reports whether some process holds lockPath exclusively:
// a non-blocking shared try on a fresh descriptor fails. Used where the OS
// does not list lock holders, to tell a live record from a stale one.
func lockHeldExclusively(lockPath string) bool {
	f := flock.New(lockPath, flock.SetFlag(os.O_RDONLY|openNoFollow))
	ok, err := lockTry(f, false)
	if err != nil {
		return true // cannot tell: show the record
	}
	if ok {
		_ = f.Unlock()
		return false
	}
	return true
}

// parseProcLocks returns the flock holders and waiters of the file with the
// given device (major:minor) and inode from the text of /proc/locks:
//
//	1: FLOCK  ADVISORY  WRITE 1234 08:01:131090 0 EOF
//	1: -> FLOCK  ADVISORY  WRITE 1235 08:01:131090 0 EOF
//
// The device numbers are hexadecimal, the inode decimal; a "->" line is a
// process blocked waiting. POSIX, OFD and lease entries are ignored.
func parseProcLocks(text []byte, major, minor uint32, ino uint64) []LockHolder {
	var out []LockHolder
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		f = f[1:]
		waiting := false
		if f[0] == "->" {
			waiting = true
			f = f[1:]
		}
		if len(f) < 5 || f[0] != "FLOCK" {
			continue
		}
		var exclusive bool
		switch f[2] {
		case "WRITE":
			exclusive = true
		case "READ":
		default:
			continue
		}
		pid, err := strconv.Atoi(f[3])
		if err != nil {
			continue
		}
		parts := strings.Split(f[4], ":")
		if len(parts) != 3 {
			continue
		}
		ma, err1 := strconv.ParseUint(parts[0], 16, 32)
		mi, err2 := strconv.ParseUint(parts[1], 16, 32)
		in, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if uint32(ma) != major || uint32(mi) != minor || in != ino {
			continue
		}
		if pid < 0 {
			pid = 0
		}
		h := LockHolder{PID: pid, Exclusive: exclusive, Waiting: waiting}
		// The kernel can list one lock twice for an instant while a waiter
		// is being queued; one process holds a lock file once (the
		// in-process lock sees to that), so identical entries are one.
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// lockKey identifies a lock file for the in-process registry: device and
// inode on Unix (a path can change its file, T2), the cleaned absolute path
// where there are no inode numbers.
type lockKey struct {
	dev, ino uint64
	path     string
}

// procLocks, the registry, is the one piece of process-global state in psbase, and it must be
// global: flock excludes open file descriptions, not goroutines, and two
// Stores (or fileLocks) on one path in one process must exclude each other as
// if they were two processes. It maps each lock file to its in-process RW lock.
// It also gives the race detector the happens-before edge between holders,
// which it cannot see through a file lock ("a redundant mutex", lockedfile).
// Entries are reference counted and dropped when unused.
var procLocks = &lockRegistry{m: make(map[lockKey]*procLock)}

type lockRegistry struct {
	mu sync.Mutex
	m  map[lockKey]*procLock
}

func (r *lockRegistry) get(k lockKey) *procLock {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.m[k]
	if p == nil {
		p = &procLock{key: k, token: make(chan struct{}, 1)}
		r.m[k] = p
	}
	p.refs++
	return p
}

func (r *lockRegistry) ref(p *procLock) {
	r.mu.Lock()
	p.refs++
	r.mu.Unlock()
}

func (r *lockRegistry) put(p *procLock) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.refs--
	if p.refs == 0 && r.m[p.key] == p {
		delete(r.m, p.key)
	}
}

// procLock is the in-process RW lock of one lock file: context-aware (a
// sync.RWMutex wait cannot be cancelled) and FIFO, so that a writer is not
// starved by a stream of readers inside one process either: once a writer
// queues, later readers queue behind it.
type procLock struct {
	key  lockKey
	refs int // guarded by procLocks.mu

	mu      sync.Mutex
	readers int
	writer  bool
	queue   []*procWaiter

	// token is held by the one goroutine of this process that waits in the
	// kernel for this lock file (T10).
	token chan struct{}
}

type procWaiter struct {
	excl    bool
	granted bool
	ready   chan struct{}
}

func (p *procLock) lock(ctx context.Context, excl bool) error {
	p.mu.Lock()
	if len(p.queue) == 0 && p.canGrant(excl) {
		p.grant(excl)
		p.mu.Unlock()
		return nil
	}
	w := &procWaiter{excl: excl, ready: make(chan struct{})}
	p.queue = append(p.queue, w)
	p.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	if w.granted {
		p.mu.Unlock()
		p.unlock(excl)
		return ctx.Err()
	}
	for i, q := range p.queue {
		if q == w {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			break
		}
	}
	p.grantWaiters() // a cancelled writer may have been blocking readers
	p.mu.Unlock()
	return ctx.Err()
}

func (p *procLock) unlock(excl bool) {
	p.mu.Lock()
	if excl {
		p.writer = false
	} else {
		p.readers--
	}
	p.grantWaiters()
	p.mu.Unlock()
}

func (p *procLock) canGrant(excl bool) bool {
	if excl {
		return !p.writer && p.readers == 0
	}
	return !p.writer
}

func (p *procLock) grant(excl bool) {
	if excl {
		p.writer = true
	} else {
		p.readers++
	}
}

// grantWaiters wakes waiters from the front of the queue in order.
func (p *procLock) grantWaiters() {
	for len(p.queue) > 0 && p.canGrant(p.queue[0].excl) {
		w := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.grant(w.excl)
		w.granted = true
		close(w.ready)
	}
}

func (p *procLock) waitToken(ctx context.Context) error {
	select {
	case p.token <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *procLock) releaseToken() { <-p.token }

// lockKeyOf returns the registry key of the lock file at path.
func lockKeyOf(path string, fi os.FileInfo) lockKey {
	if dev, ino, ok := lockFileID(fi); ok {
		return lockKey{dev: dev, ino: ino}
	}
	p := filepath.Clean(path)
	if runtime.GOOS == "windows" {
		p = strings.ToLower(p)
	}
	return lockKey{path: p}
}

// lockUnsafeFS maps the Linux statfs f_type magic numbers of file systems whose locks
// cannot be trusted (T12) to their names (linux/magic.h and the file
// systems' sources). Network file systems can lose locks when the server or
// the lock daemon restarts, or fake them locally (NFS "local_lock", SMB
// "nobrl"); FUSE (sshfs, gocryptfs, virtiofs...) and 9p pass flock to a user
// space server or handle it locally only for this machine.
var lockUnsafeFS = map[uint32]string{
	0x6969:     "nfs",
	0x517b:     "smb",
	0xff534d42: "cifs",
	0xfe534d42: "smb2",
	0x65735546: "fuse (incl. virtiofs)",
	0x01021997: "9p",
	0x00c36400: "ceph",
	0x5346414f: "afs",
	0x6b414653: "afs",
	0x73757245: "coda",
	0x564c:     "ncp",
	0x0bd00bd0: "lustre",
	0x13661366: "orangefs",
	0x786f4256: "vboxsf",
	0x47504653: "gpfs",
}

// lockFSName returns the name of an unsafe file system magic, or "" if it is
// not one.
func lockFSName(magic uint32) string { return lockUnsafeFS[magic] }

package psbase

// local.go: the local backend — a bbolt file opened for one transaction under
// psbase's cross-process lock, and the lifecycle of that file (create,
// verify). The invariant: the lock is taken before the file is opened and
// released only after it is closed, so no bbolt handle outlives its lock.
//
// May touch: the database file (through bbolt and openStoreFile), the
// temporary <db>.creating beside it, their directory (fsync). The lock files
// only through s.acquire.

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

	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/boltkv"
	"github.com/psbase/psbase/internal/kv"
	"github.com/psbase/psbase/internal/lock"
)

// boltFile is one opened bbolt handle and the descriptor bbolt got from
// openStoreFile. The descriptor is kept so that a handle bbolt failed on can
// be abandoned: after a panic inside bbolt its own mutexes may still be held
// (a panic inside Commit leaves the writer mutex locked), so db.Close and
// Tx.Rollback would deadlock; closing the descriptor drops bbolt's flock on
// the file and the handle is never used again (its mapping leaks, once).
type boltFile struct {
	db   *bolt.DB
	file *os.File
	addr uintptr // where bbolt mapped the file when it opened (0 unknown)
	keep bool    // tests only: abandon leaves the mapping (weakness.keepMap)
	once sync.Once
	gone atomic.Bool // abandoned
}

// abandoned reports whether the handle was given up.
func (h *boltFile) abandoned() bool { return h.gone.Load() }

// liveMaps holds the mapping addresses of the bbolt handles open in this
// process, so that abandoning one handle unmaps only what no live handle
// uses. It is process-wide state because mappings are: like the lock
// registry, one per process, whatever the number of Stores.
var liveMaps addrSet

// addrSet is a set of addresses safe for concurrent use. A mutex and a map,
// not a sync.Map: a sync.Map allocates an entry for every new key, and every
// open of the file maps it at a new address.
type addrSet struct {
	mu sync.Mutex
	m  map[uintptr]struct{}
}

func (a *addrSet) add(p uintptr) {
	a.mu.Lock()
	if a.m == nil {
		a.m = make(map[uintptr]struct{})
	}
	a.m[p] = struct{}{}
	a.mu.Unlock()
}

func (a *addrSet) remove(p uintptr) {
	a.mu.Lock()
	delete(a.m, p)
	a.mu.Unlock()
}

func (a *addrSet) has(p uintptr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.m[p]
	return ok
}

// mapped records the handle's mapping as live.
func (h *boltFile) mapped() {
	defer func() { _ = recover() }() // Info asserts a mapping exists
	if info := h.db.Info(); info != nil && info.Data != 0 {
		h.addr = info.Data
		liveMaps.add(h.addr)
	}
}

// close closes the handle normally.
func (h *boltFile) close() (err error) {
	h.once.Do(func() {
		err = h.db.Close()
		if h.addr != 0 {
			liveMaps.remove(h.addr)
		}
	})
	return err
}

// abandon gives the handle up without calling into bbolt again: it closes
// the descriptor and unmaps the mapping bbolt left (which would otherwise
// keep bbolt's flock on the file: a mapping holds the open file
// description), on Linux.
func (h *boltFile) abandon() {
	h.gone.Store(true)
	h.once.Do(func() {
		if h.file == nil {
			return
		}
		fi, err := h.file.Stat()
		_ = h.file.Close()
		if h.addr != 0 {
			liveMaps.remove(h.addr)
		}
		if err == nil && !h.keep {
			unmapLeaked(fi, liveMaps.has)
		}
	})
}

// openBolt opens the database file for one transaction (the lock is held).
// bbolt reads its meta pages and, for a write, its freelist while opening:
// on a damaged file that can panic or fault, so the open runs guarded.
func (s *Store) openBolt(write bool) (*boltFile, error) {
	h := &boltFile{keep: s.cfg.weak.keepMap}
	opts := &bolt.Options{
		Timeout:  s.cfg.boltTimeout,
		ReadOnly: !write,
		NoSync:   s.cfg.noSync,
		OpenFile: func(name string, flag int, _ os.FileMode) (*os.File, error) {
			f, err := openStoreFile(name, flag)
			h.file = f
			if err == nil && s.cfg.weak.afterOpen != nil {
				s.cfg.weak.afterOpen()
			}
			return f, err
		},
	}
	err := guarded(h, func() error {
		var err error
		h.db, err = bolt.Open(s.path, s.cfg.fileMode, opts)
		return err
	})
	if err != nil {
		if h.db == nil && h.file != nil {
			h.abandon() // bbolt panicked before it could return the handle
		}
		return nil, s.classifyOpenError(err)
	}
	h.mapped()
	return h, nil
}

// view runs fn in a read transaction on h, guarded; it closes h unless bbolt
// failed, in which case h is abandoned.
func (h *boltFile) view(fn func(kv.Tx) error) error {
	err := guarded(h, func() error {
		return h.db.View(func(btx *bolt.Tx) error { return fn(boltkv.Tx{BTx: btx}) })
	})
	if cerr := h.close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Store) classifyOpenError(err error) error {
	switch {
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnsafePath), errors.Is(err, ErrNotExist):
		return err
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s is gone (destroyed?)", ErrNotExist, s.path)
	case isBoltTimeout(err):
		return fmt.Errorf("%w: bbolt's own file lock on %s is held by a program that does not use psbase's lock", ErrLockTimeout, s.path)
	case isBoltFormatError(err):
		return errorf(ErrCorrupt, "not a psbase store: %v", err)
	}
	return classifyIOError(err)
}

// beginLocal takes the lock for op and begins a bbolt transaction on a file
// opened for it alone. Ending the returned kv.Tx closes the file and
// releases the lock, in that order.
func (s *Store) beginLocal(ctx context.Context, op string, write bool) (kv.Tx, error) {
	g, waited, err := s.acquireWait(ctx, op, write, false)
	if err != nil {
		return nil, err
	}
	release := g.Release
	warm := !write && s.warmReads()
	var h *boltFile
	if warm {
		h, err = s.warm.get(s)
	} else {
		h, err = s.openBolt(write)
	}
	if err != nil {
		release()
		return nil, err
	}
	t := &localTx{s: s, h: h, grant: g, release: release, warm: warm, waited: waited}
	var btx *bolt.Tx
	err = guarded(h, func() error {
		var err error
		btx, err = h.db.Begin(write)
		return err
	})
	if err != nil {
		t.closeFile() // a no-op if guarded abandoned it
		release()
		return nil, classifyIOError(err)
	}
	t.Tx = boltkv.Tx{BTx: btx}
	return t, nil
}

// warmReads reports whether this Store's reads use its kept handle.
func (s *Store) warmReads() bool { return warmSupported && !s.cfg.noWarmReads }

// localTx is a transaction of the local backend.
type localTx struct {
	boltkv.Tx
	s       *Store
	h       *boltFile
	grant   *lock.Grant
	release func()
	warm    bool          // h is the Store's kept read handle (warm.go)
	waited  time.Duration // how long the lock took
}

// closeFile ends this transaction's use of its file: a handle of its own
// is closed, the kept handle handed back.
func (t *localTx) closeFile() error {
	if t.warm {
		t.s.warm.put(t.h)
		return nil
	}
	return t.h.close()
}

// Commit commits, closes the file and releases the lock, whatever fails.
// A write is acknowledged only if, after its commit, the lock it held and
// the file it committed into are still the store's (T20): a lock file
// deleted by a tmp cleaner lets another process in beside this one, and a
// Cleanup that renamed its copy over the store meanwhile leaves this commit
// in an unlinked file. Then the outcome is unknown, and the error says so.
func (t *localTx) Commit() error {
	write := t.BTx.Writable()
	err := t.Tx.Commit()
	if err == nil && write && !t.s.cfg.weak.noCommitCheck {
		if err = fromLock(t.grant.StillHeld()); err == nil {
			err = stillTheStore(t.s.path, t.h.file)
		}
	}
	if cerr := t.closeFile(); err == nil {
		err = cerr
	}
	t.release()
	return classifyIOError(err)
}

// Rollback rolls back, closes the file and releases the lock.
func (t *localTx) Rollback() error {
	err := t.Tx.Rollback()
	if cerr := t.closeFile(); err == nil {
		err = cerr
	}
	t.release()
	return classifyIOError(err)
}

// Abandon gives the bbolt handle up (see boltFile) and releases the lock.
func (t *localTx) Abandon() {
	t.h.abandon()
	if t.warm {
		t.s.warm.put(t.h)
	}
	t.release()
}

// verify checks that the file is a psbase store this version can read; the
// lock is held.
func (s *Store) verify(write bool) error {
	h, err := s.openBolt(write)
	if err != nil {
		return err
	}
	return h.view(func(kt kv.Tx) error {
		if _, err := checkFormat(kt, write); err != nil {
			return err
		}
		_, err := s.loadSchema(kt.Bucket(bucketMeta))
		return err
	})
}

// create makes a new store at s.path; the exclusive lock is held. The store
// is built aside, in <db>.creating, committed (fsynced) there, and only then
// put in place by one atomic step: a link (Create must not replace what
// appeared meanwhile) or, to overwrite, a rename. A process killed at any
// instant leaves the old store or a complete new one, never a file that
// nobody can open or create; its leftover <db>.creating is removed here by
// the next creator.
func (s *Store) create(sch *schema, overwrite bool) error {
	replace := false
	fi, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return classifyPathError(s.path, err)
	case fi.IsDir():
		return fmt.Errorf("%w: %s %w", ErrNotExist, s.path, errIsDir)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s is not a regular file (%s)", ErrUnsafePath, s.path, fi.Mode().Type())
	case overwrite:
		replace = true
	case s.halfMade(fi):
		replace = true
		s.logf(context.Background(), slog.LevelInfo, "replacing a store whose creation was interrupted")
	default:
		return fmt.Errorf("%w: %s (use WithOverwrite to replace it)", ErrExists, s.path)
	}
	tmp := s.path + suffixCreating
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return classifyIOError(err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.Remove(tmp)
		}
	}()
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|openNoFollow, s.cfg.fileMode)
	if err != nil {
		return classifyPathError(tmp, err)
	}
	db, err := bolt.Open(tmp, s.cfg.fileMode, &bolt.Options{
		Timeout: s.cfg.boltTimeout,
		NoSync:  s.cfg.noSync,
		OpenFile: func(string, int, os.FileMode) (*os.File, error) {
			return f, nil
		},
	})
	if err != nil {
		f.Close()
		return classifyIOError(err)
	}
	err = db.Update(func(btx *bolt.Tx) error { return initFormat(boltkv.Tx{BTx: btx}, sch) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return classifyIOError(err)
	}
	if replace {
		err = os.Rename(tmp, s.path)
	} else {
		err = os.Link(tmp, s.path)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s (created meanwhile by a program that does not use psbase's lock)", ErrExists, s.path)
		}
		if err == nil {
			err = os.Remove(tmp)
		} else if _, serr := os.Lstat(s.path); errors.Is(serr, fs.ErrNotExist) {
			err = os.Rename(tmp, s.path) // a file system without hard links
		}
	}
	if err != nil {
		return classifyIOError(err)
	}
	done = true
	return syncDir(filepath.Dir(s.path))
}

// halfMade reports whether the file at s.path is what an interrupted Create
// of an older psbase left: an empty file, a short file of zeros, or a bbolt
// file with no bucket at all. Such a file holds no data, so Create and
// Open(WithCreate) may replace it; Open reports it as ErrNotExist.
func (s *Store) halfMade(fi os.FileInfo) bool {
	const initSize = 4 * 4096 // bbolt's initial file: two metas, a freelist, a leaf
	if fi.Size() == 0 {
		return true
	}
	if fi.Size() <= initSize {
		if b, err := os.ReadFile(s.path); err == nil && allZero(b) {
			return true
		}
	}
	h, err := s.openBolt(false)
	if err != nil {
		return false
	}
	empty := false
	_ = h.view(func(kt kv.Tx) error {
		bt := kt.(boltkv.Tx).BTx
		k, _ := bt.Cursor().First()
		empty = k == nil
		return nil
	})
	return empty
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

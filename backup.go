package psbase

// backup.go: hot backup and restore. A backup is a consistent copy of the
// store taken under the shared lock (readers carry on, writers wait while it
// copies: bbolt reuses freed pages, so a snapshot is safe only while no
// writer runs); a restore replaces the store with a checked copy under the
// exclusive lock, as Cleanup replaces it with a compacted one.
//
// May touch: the database (read under the shared lock; replaced under the
// exclusive lock by Restore), the backup file and <file>.partial beside it,
// <db>.creating, and their directories (fsync).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/boltkv"
	"github.com/psbase/psbase/internal/kv"
)

// suffixPartial is a backup being written, renamed into place when complete
// and checked.
const suffixPartial = ".partial"

// Backup writes a consistent copy of the store to w — a psbase store file
// itself — and returns the bytes written. It runs under the shared lock:
// other processes keep reading, writers wait until it is done. ctx is
// honoured while it copies. A remote store is copied from one read-only
// transaction (for etcd: one revision; writers carry on) into a local
// store file, which is what w gets (backup_remote.go).
func (s *Store) Backup(ctx context.Context, w io.Writer) (n int64, err error) {
	err = s.run(ctx, "backup", false, func(tx *Tx) (err error) {
		lt, ok := tx.kt.(*localTx)
		if !ok {
			n, err = s.backupRemote(ctx, tx.kt, w) // backup_remote.go
			return err
		}
		old, err := tx.enter(false)
		if err != nil {
			return err
		}
		defer tx.exit(old, &err)
		n, err = lt.BTx.WriteTo(ctxWriter{ctx: ctx, w: w})
		return classifyIOError(err)
	})
	return n, err
}

// ctxWriter stops a copy when its context ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("backup stopped: %w", err)
	}
	return c.w.Write(p)
}

// BackupFile writes a backup of the store to the file at path: into
// <path>.partial first, fsynced, checked as Check checks a store, and only
// then renamed into place (and the directory fsynced), so path holds a
// complete, sound copy or what it held before. path must not exist, unless
// WithOverwrite is given; it must not be the store itself.
func (s *Store) BackupFile(ctx context.Context, path string, opts ...Option) (n int64, err error) {
	cfg := newConfig(opts)
	dst, err := resolvePath(path)
	if err != nil {
		return 0, wrapErr("backup", path, err)
	}
	if dst == s.path {
		return 0, wrapErr("backup", path, errorf(ErrExists, "the backup cannot be the store itself"))
	}
	if _, err := os.Lstat(dst); err == nil && !cfg.overwrite {
		return 0, wrapErr("backup", dst, fmt.Errorf("%w: %s exists (use WithOverwrite to replace it)", ErrExists, dst))
	}
	tmp := dst + suffixPartial
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, wrapErr("backup", tmp, classifyIOError(err))
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|openNoFollow, s.cfg.fileMode)
	if err != nil {
		return 0, wrapErr("backup", tmp, classifyPathError(tmp, err))
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if n, err = s.Backup(ctx, f); err != nil {
		return n, err
	}
	if err := f.Sync(); err != nil {
		return n, wrapErr("backup", tmp, classifyIOError(err))
	}
	if err := f.Close(); err != nil {
		return n, wrapErr("backup", tmp, classifyIOError(err))
	}
	if err := checkCopy(tmp); err != nil {
		return n, wrapErr("backup", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return n, wrapErr("backup", dst, classifyIOError(err))
	}
	done = true
	return n, wrapErr("backup", dst, syncDir(filepath.Dir(dst)))
}

// checkCopy checks a store file nobody else uses (a backup being made, a
// file to restore) as Check does, without taking its lock.
func checkCopy(path string) error {
	cs, err := newStore(path, newConfig(nil))
	if err != nil {
		return err
	}
	var rep CheckReport
	if _, err := cs.checkFile(&rep, false); err != nil {
		return err
	}
	if !rep.OK() {
		return errorf(ErrCorrupt, "%s is not a sound store (%d problem(s), first: %s)", path, len(rep.Problems), rep.Problems[0])
	}
	return nil
}

// Restore replaces the store with the backup at from, under the exclusive
// lock: the backup is checked first (a damaged one is refused, ErrCorrupt,
// and nothing changes), copied beside the store, fsynced, given the store's
// owner, group and mode, and renamed over it. Processes waiting for the lock
// then find the restored store, as after Cleanup.
//
// The restored store's revision moves past the replaced store's and its
// change log starts empty there, so every watcher (Changes, Watch) of a
// revision from before the restore gets ErrChangesGone and resyncs: the
// changes since the backup were undone, and no watcher is left believing
// them. A backup of an older format is upgraded in the copy; one that this
// psbase cannot write (ErrNewerFormat) is refused.
func (s *Store) Restore(ctx context.Context, from string) error {
	if s.remote != nil {
		return wrapErr("restore", s.path, s.errLocalOnly("restore"))
	}
	src, err := resolvePath(from)
	if err != nil {
		return wrapErr("restore", from, err)
	}
	if src == s.path {
		return wrapErr("restore", from, errorf(ErrExists, "cannot restore a store from itself"))
	}
	if err := checkCopy(src); err != nil {
		return wrapErr("restore", src, err)
	}
	err = s.exclusive(ctx, "restore", func() error {
		fi, err := os.Lstat(s.path)
		if err != nil {
			return statStore(s.path)
		}
		if err := mayKeepOwner(s.path, fi); err != nil {
			return err
		}
		in, err := openStoreFile(src, os.O_RDONLY)
		if err != nil {
			return err
		}
		defer in.Close()
		tmp := s.path + suffixCreating
		if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return classifyIOError(err)
		}
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|openNoFollow, fi.Mode().Perm())
		if err != nil {
			return classifyPathError(tmp, err)
		}
		ok := false
		defer func() {
			if !ok {
				out.Close()
				_ = os.Remove(tmp)
			}
		}()
		if err := keepOwner(out, fi); err != nil {
			return err
		}
		if _, err := io.Copy(out, ctxReader{ctx: ctx, r: in}); err != nil {
			return classifyIOError(err)
		}
		if err := out.Sync(); err != nil {
			return classifyIOError(err)
		}
		if err := out.Close(); err != nil {
			return classifyIOError(err)
		}
		if err := s.restamp(tmp, fi.Mode().Perm()); err != nil {
			return err
		}
		s.warm.retire()
		if err := os.Rename(tmp, s.path); err != nil {
			return classifyIOError(err)
		}
		ok = true
		return syncDir(filepath.Dir(s.path))
	})
	return wrapErr("restore", s.path, err)
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("restore stopped: %w", err)
	}
	return c.r.Read(p)
}

// restamp prepares Restore's copy at tmp (restampRestored): its revision
// moves past the replaced store's, its change log is emptied, it gets a new
// identity. The exclusive lock is held; the copy is committed (fsynced).
func (s *Store) restamp(tmp string, mode os.FileMode) error {
	cur := s.currentRevision()
	db, err := bolt.Open(tmp, mode, &bolt.Options{Timeout: s.cfg.boltTimeout, NoSync: s.cfg.noSync})
	if err != nil {
		return classifyIOError(err)
	}
	err = db.Update(func(btx *bolt.Tx) error {
		kt := boltkv.Tx{BTx: btx}
		if _, err := checkFormat(kt, true); err != nil {
			return err
		}
		return restampRestored(kt, cur)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return classifyIOError(err)
}

// currentRevision is the revision of the store Restore replaces (the
// exclusive lock is held), 0 if it cannot be read (a damaged store).
func (s *Store) currentRevision() uint64 {
	h, err := s.openBolt(false)
	if err != nil {
		return 0
	}
	var rev uint64
	_ = h.view(func(kt kv.Tx) error {
		if meta := kt.Bucket(bucketMeta); meta != nil {
			rev = u64(meta.Get(keyRev))
		}
		return nil
	})
	return rev
}

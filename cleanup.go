package psbase

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// CleanupResult reports what Cleanup did.
type CleanupResult struct {
	Before    int64 // file size before, bytes
	After     int64 // file size after, bytes
	Reclaimed int64 // Before - After
	Records   int   // records copied
}

// compactTxSize bounds each bbolt transaction of the copy, so compacting a
// large store does not need all of it in one dirty transaction.
const compactTxSize = 64 << 20

// Cleanup compacts the store (Buzhug's cleanup): it copies the live data into
// <db>.compact, fsyncs it, renames it over the database and fsyncs the
// directory, all under the exclusive lock. Processes that want the store in
// the meantime wait; they open the new file by path when their turn comes
// (this is safe only because no process keeps the database open between
// operations and the lock lives in a separate file). If anything fails, the
// original file is untouched and the temporary file removed.
func (s *Store) Cleanup(ctx context.Context) (res CleanupResult, err error) {
	err = s.exclusive(ctx, "cleanup", func() error {
		var err error
		res, err = s.compact()
		return err
	})
	if err != nil {
		return res, wrapErr("cleanup", s.path, err)
	}
	s.logf(slog.LevelInfo, "compacted", "before", res.Before, "after", res.After)
	return res, nil
}

func (s *Store) compact() (res CleanupResult, err error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return res, statStore(s.path)
	}
	res.Before = fi.Size()
	src, err := s.openBolt(false)
	if err != nil {
		return res, err
	}
	defer src.Close()
	if err := withFaultGuard(func() error {
		return src.View(func(btx *bolt.Tx) error {
			if err := checkFormat(btx); err != nil {
				return err
			}
			res.Records = int(u64(btx.Bucket(bucketMeta).Get(keyCount)))
			return nil
		})
	}); err != nil {
		return res, err
	}

	tmp := s.path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, classifyIOError(err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	dst, err := bolt.Open(tmp, fi.Mode().Perm(), &bolt.Options{Timeout: s.cfg.boltTimeout, NoSync: true})
	if err != nil {
		return res, classifyIOError(err)
	}
	err = withFaultGuard(func() error { return bolt.Compact(dst, src, compactTxSize) })
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, classifyIOError(err)
	}
	if err := syncFile(tmp); err != nil {
		return res, err
	}
	_ = os.Chmod(tmp, fi.Mode().Perm())
	if err := os.Rename(tmp, s.path); err != nil {
		return res, classifyIOError(err)
	}
	ok = true
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return res, err
	}
	if fi, err := os.Stat(s.path); err == nil {
		res.After = fi.Size()
	}
	res.Reclaimed = res.Before - res.After
	return res, nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return classifyIOError(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return classifyIOError(err)
	}
	return classifyIOError(f.Close())
}

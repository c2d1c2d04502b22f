package psbase

// May touch: the database file and <db>.compact beside it (and their directory, fsync), under the exclusive lock.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/psbase/psbase/internal/boltkv"
	"github.com/psbase/psbase/internal/kv"
	"github.com/psbase/psbase/internal/lock"
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
// (this is safe only because no process writes through a handle kept between
// operations, a kept read handle is checked against the file's identity
// before every read (warm.go), and the lock lives in a separate file). If anything fails, the
// original file is untouched and the temporary file removed.
//
// Cleanup first checks the store (as Check does) and refuses a damaged one
// with ErrCorrupt, leaving it as it is: compacting would copy what bbolt can
// still read and drop the rest silently. Use Recover on a damaged store.
//
// Cleanup also upgrades a store of an older format to FormatVersion (see
// FORMAT.md): it rewrites every record's checksum in the copy.
//
// The new file keeps the old one's owner, group and mode, so a Cleanup run by
// root from cron never locks the owning application out. A caller who could
// not give it those (neither root nor the owner, or not in the file's group)
// gets ErrReadOnly before anything is written.
func (s *Store) Cleanup(ctx context.Context) (res CleanupResult, err error) {
	if s.remote != nil {
		return s.cleanupRemote(ctx) // cleanup_remote.go
	}
	err = s.locked(ctx, "cleanup", true, false, func(g *lock.Grant) error {
		var err error
		res, err = s.compact(g)
		return err
	})
	if err != nil {
		return res, wrapErr("cleanup", s.path, err)
	}
	s.logf(ctx, slog.LevelInfo, "compacted", "before", res.Before, "after", res.After)
	return res, nil
}

// compact does Cleanup's work; the exclusive lock is held.
func (s *Store) compact(g *lock.Grant) (res CleanupResult, err error) {
	fi, err := os.Lstat(s.path)
	if err != nil {
		return res, statStore(s.path)
	}
	res.Before = fi.Size()
	if err := mayKeepOwner(s.path, fi); err != nil {
		return res, err
	}

	// Refuse a damaged store (read through its own handle: the check reads
	// every page, and a fault abandons that handle only).
	var rep CheckReport
	format, err := s.checkFile(&rep, true)
	if err != nil {
		return res, err
	}
	if !rep.OK() {
		return res, errorf(ErrCorrupt, "Cleanup refuses a damaged store (%d problem(s), first: %s); the file is untouched: run Check for the list and Recover to salvage the records", len(rep.Problems), rep.Problems[0])
	}
	res.Records = rep.Records

	src, err := s.openBolt(false)
	if err != nil {
		return res, err
	}
	defer src.close()

	tmp := s.path + suffixCompact
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, classifyIOError(err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|openNoFollow, fi.Mode().Perm())
	if err != nil {
		return res, classifyPathError(tmp, err)
	}
	if err := keepOwner(f, fi); err != nil {
		f.Close()
		return res, err
	}
	dst, err := bolt.Open(tmp, fi.Mode().Perm(), &bolt.Options{
		Timeout:  s.cfg.boltTimeout,
		NoSync:   true, // one fsync of the whole file below
		OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil },
	})
	if err != nil {
		f.Close()
		return res, classifyIOError(err)
	}
	err = guarded(src, func() error { return bolt.Compact(dst, src.db, compactTxSize) })
	if err == nil && format < FormatVersion {
		err = dst.Update(func(btx *bolt.Tx) error { return upgradeFormat(boltkv.Tx{BTx: btx}, format) })
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, classifyIOError(err)
	}
	if err := syncFile(tmp); err != nil {
		return res, err
	}
	// The rename must replace the file this Cleanup copied, and nothing
	// else, and only while its lock still excludes every writer (T20): a
	// lock file deleted meanwhile let writers in whose commits the copy
	// lacks.
	if s.cfg.weak.beforeRename != nil {
		s.cfg.weak.beforeRename()
	}
	if err := fromLock(g.StillHeld()); err != nil && !s.cfg.weak.noRenameCheck {
		return res, fmt.Errorf("Cleanup discarded its copy, the store is as it was: %w", err)
	}
	if !sameFile(src.file, s.path) {
		return res, errorf(ErrUnknownOutcome, "%s was replaced during Cleanup; the compacted copy was discarded", s.path)
	}
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

// syncFile fsyncs the file at path.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|openNoFollow, 0)
	if err != nil {
		return classifyIOError(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return classifyIOError(err)
	}
	return classifyIOError(f.Close())
}

// upgradeFormat brings a compacted copy in format from up to FormatVersion.
// Format 1 → 2: every record's CRC is recomputed over its ID and body (the
// body is unchanged; its old CRC was verified by Cleanup's check). Format
// 2 or 3 → 4: the change log starts, at revision 0.
func upgradeFormat(kt kv.Tx, from uint32) error {
	if from < 2 {
		records := kt.Bucket(bucketRecords)
		c := records.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 || len(v) < crcSize {
				return errorf(ErrCorrupt, "record key %x: cannot upgrade", k)
			}
			key := bytes.Clone(k)
			body := v[:len(v)-crcSize]
			// A fresh slice each time: bbolt keeps Put's value until commit.
			val := append(append(make([]byte, 0, len(v)), body...), putU32(recordCRC(2, u64(key), body))...)
			if err := records.Put(key, val); err != nil {
				return err
			}
			c.Seek(key) // a Put invalidates the cursor: stand on the key again
		}
	}
	meta := kt.Bucket(bucketMeta)
	if err := ensureFeed(meta); err != nil {
		return err
	}
	return setFormat(meta, FormatVersion)
}

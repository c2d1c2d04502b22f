package psbase

// backup_remote.go: Backup of a remote store. The store is read in one
// read-only transaction of its backend (for etcd: one revision, so the
// copy is the store as it was at one instant while writers go on) and
// written, bucket by bucket and key by key, into a fresh local bbolt file
// through the local storage seam; that file, a psbase store like any local
// backup, is then streamed to the writer. Open and Restore take it as they
// take a local backup.
//
// May touch: a temporary directory of its own (removed before it returns);
// the remote store is only read.

import (
	"context"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/boltkv"
	"github.com/psbase/psbase/internal/kv"
)

// backupRemote copies the store that src (a read-only transaction of the
// remote backend, the format checked) sees into a local store file and
// writes that file to w.
func (s *Store) backupRemote(ctx context.Context, src kv.Tx, w io.Writer) (int64, error) {
	dir, err := os.MkdirTemp("", "psbase-backup-")
	if err != nil {
		return 0, classifyIOError(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "backup.psb")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: s.cfg.boltTimeout, NoSync: true})
	if err != nil {
		return 0, classifyIOError(err)
	}
	err = db.Update(func(btx *bolt.Tx) error {
		dst := boltkv.Tx{BTx: btx}
		for _, name := range allBuckets {
			sb := src.Bucket(name)
			if backend.WeakTornBackup.Load() {
				sb = s.tornBucket(ctx, name)
			}
			if sb == nil {
				continue
			}
			db, err := dst.CreateBucket(name)
			if err != nil {
				return err
			}
			if err := copyBucket(ctx, sb, db); err != nil {
				return err
			}
		}
		// A failed remote read left a hole: the copy must not be kept.
		if e, ok := src.(interface{ Err() error }); ok && e.Err() != nil {
			return e.Err()
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, classifyIOError(err)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, classifyIOError(err)
	}
	defer f.Close()
	n, err := io.Copy(ctxWriter{ctx: ctx, w: w}, f)
	return n, classifyIOError(err)
}

// copyBucket copies src's keys, sequence and nested buckets into dst.
func copyBucket(ctx context.Context, src, dst kv.Bucket) error {
	c := src.Cursor()
	i := 0
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if i++; i%ctxCheckEvery == 0 && ctx.Err() != nil {
			return errorf(ctx.Err(), "backup stopped")
		}
		if v == nil {
			continue // a nested bucket (bbolt): copied below
		}
		if err := dst.Put(k, v); err != nil {
			return err
		}
	}
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	return src.ForEachBucket(func(name []byte) error {
		sub := src.Bucket(name)
		if sub == nil {
			return nil
		}
		d, err := dst.CreateBucket(name)
		if err != nil {
			return err
		}
		return copyBucket(ctx, sub, d)
	})
}

// tornBucket is the top-level bucket name as the WeakTornBackup control
// reads it: its cursor begins a new read-only transaction for every key.
func (s *Store) tornBucket(ctx context.Context, name []byte) kv.Bucket {
	kt, err := s.remote.Begin(ctx, false, "backup")
	if err != nil {
		return nil
	}
	b := kt.Bucket(name)
	if b == nil {
		_ = kt.Rollback()
		return nil
	}
	return &torn{inner: b, s: s, ctx: ctx, name: name}
}

type torn struct {
	inner kv.Bucket
	s     *Store
	ctx   context.Context
	name  []byte
}

func (t *torn) Cursor() kv.Cursor { return &tornCursor{t: t} }

// tornCursor walks forward only, which is all copyBucket needs.
type tornCursor struct {
	t    *torn
	last []byte
}

func (c *tornCursor) fresh() kv.Cursor {
	kt, err := c.t.s.remote.Begin(c.t.ctx, false, "backup")
	if err != nil {
		return nil
	}
	b := kt.Bucket(c.t.name)
	if b == nil {
		return nil
	}
	return b.Cursor()
}

func (c *tornCursor) land(k, v []byte) ([]byte, []byte) {
	c.last = append([]byte(nil), k...)
	return k, v
}

func (c *tornCursor) First() ([]byte, []byte) {
	if cur := c.fresh(); cur != nil {
		return c.land(cur.First())
	}
	return nil, nil
}

func (c *tornCursor) Next() ([]byte, []byte) {
	cur := c.fresh()
	if cur == nil || c.last == nil {
		return nil, nil
	}
	k, v := cur.Seek(c.last)
	if k != nil && string(k) == string(c.last) {
		k, v = cur.Next()
	}
	return c.land(k, v)
}

func (c *tornCursor) Last() ([]byte, []byte)         { return nil, nil }
func (c *tornCursor) Prev() ([]byte, []byte)         { return nil, nil }
func (c *tornCursor) Seek(k []byte) ([]byte, []byte) { return nil, nil }

func (t *torn) Get(k []byte) []byte                       { return t.inner.Get(k) }
func (t *torn) Put(k, v []byte) error                     { return t.inner.Put(k, v) }
func (t *torn) Delete(k []byte) error                     { return t.inner.Delete(k) }
func (t *torn) Sequence() uint64                          { return t.inner.Sequence() }
func (t *torn) SetSequence(v uint64) error                { return t.inner.SetSequence(v) }
func (t *torn) NextSequence() (uint64, error)             { return t.inner.NextSequence() }
func (t *torn) Bucket(n []byte) kv.Bucket                 { return t.inner.Bucket(n) }
func (t *torn) CreateBucket(n []byte) (kv.Bucket, error)  { return t.inner.CreateBucket(n) }
func (t *torn) DeleteBucket(n []byte) error               { return t.inner.DeleteBucket(n) }
func (t *torn) ForEachBucket(fn func([]byte) error) error { return t.inner.ForEachBucket(fn) }

// Package boltkv adapts a bbolt transaction to the storage seam kv.Tx. It is
// a thin layer: no state, no allocation beyond bbolt's own (each wrapper is a
// single pointer, stored directly in an interface value).
//
// May touch: a *bolt.Tx handed to it, and the mapping of its file, read
// (frees.go); nothing else (no files, no locks).
package boltkv

import (
	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/kv"
)

// Tx wraps a bbolt transaction.
type Tx struct{ BTx *bolt.Tx }

var _ kv.Tx = Tx{}

// Writable reports whether the transaction may write.
func (t Tx) Writable() bool { return t.BTx.Writable() }

// Bucket returns the top-level bucket called name, or nil.
func (t Tx) Bucket(name []byte) kv.Bucket { return wrap(t.BTx.Bucket(name)) }

// CreateBucket creates a top-level bucket.
func (t Tx) CreateBucket(name []byte) (kv.Bucket, error) {
	b, err := t.BTx.CreateBucket(name)
	if err != nil {
		return nil, err
	}
	return Bucket{b}, nil
}

// DeleteBucket removes a top-level bucket, once every page bbolt would free
// for it has passed boltwalk.TreeFits.
func (t Tx) DeleteBucket(name []byte) error {
	if err := treeFits(t.BTx, t.BTx.Bucket(name)); err != nil {
		return err
	}
	return t.BTx.DeleteBucket(name)
}

// Commit commits the bbolt transaction.
func (t Tx) Commit() error { return t.BTx.Commit() }

// Rollback rolls the bbolt transaction back.
func (t Tx) Rollback() error { return t.BTx.Rollback() }

// Bucket wraps a bbolt bucket.
type Bucket struct{ B *bolt.Bucket }

// wrap returns nil (a nil interface, not a wrapper of nil) for a missing bucket.
func wrap(b *bolt.Bucket) kv.Bucket {
	if b == nil {
		return nil
	}
	return Bucket{b}
}

func (b Bucket) Get(key []byte) []byte         { return b.B.Get(key) }
func (b Bucket) Put(key, value []byte) error   { return b.B.Put(key, value) }
func (b Bucket) Delete(key []byte) error       { return b.B.Delete(key) }
func (b Bucket) Cursor() kv.Cursor             { return b.B.Cursor() }
func (b Bucket) Sequence() uint64              { return b.B.Sequence() }
func (b Bucket) SetSequence(v uint64) error    { return b.B.SetSequence(v) }
func (b Bucket) NextSequence() (uint64, error) { return b.B.NextSequence() }
func (b Bucket) Bucket(name []byte) kv.Bucket  { return wrap(b.B.Bucket(name)) }

// DeleteBucket removes a nested bucket, once every page bbolt would free for
// it has passed boltwalk.TreeFits.
func (b Bucket) DeleteBucket(name []byte) error {
	if err := treeFits(b.B.Tx(), b.B.Bucket(name)); err != nil {
		return err
	}
	return b.B.DeleteBucket(name)
}

// CreateBucket creates a nested bucket.
func (b Bucket) CreateBucket(name []byte) (kv.Bucket, error) {
	nb, err := b.B.CreateBucket(name)
	if err != nil {
		return nil, err
	}
	return Bucket{nb}, nil
}

// ForEachBucket calls fn with the name of every nested bucket.
func (b Bucket) ForEachBucket(fn func(name []byte) error) error {
	return b.B.ForEachBucket(fn)
}

// Package kv is psbase's storage seam: the small key-value transaction
// interface that the record layer (records, indexes, schema, queries, Check's
// logical pass) runs on. The local store implements it with a bbolt file under
// psbase's cross-process lock (package internal/boltkv plus the root's local
// backend); other backends live in modules of their own.
//
// # The contract a second implementation must keep
//
//   - Atomic commit: a writable Tx's changes become visible all together when
//     Commit returns nil, and durable then (unless the store was opened with
//     no-sync); an error from Commit, a Rollback, or a crash of the process
//     leaves none of them. A Tx whose Commit failed is ended: its lock is free.
//   - Isolation: a Tx runs while nothing else writes the store (the backend's
//     lock excludes other writers for a writable Tx); a read-only Tx sees one
//     consistent snapshot for its whole life.
//   - Ordered iteration: a Cursor walks a bucket's keys in bytes.Compare
//     order, forwards and backwards, and Seek finds the first key >= its
//     argument. A bucket's nested buckets may appear in its own iteration as
//     keys with a nil value (bbolt does this); the record layer never stores
//     a nil value, so it can tell them apart.
//   - A per-bucket sequence: NextSequence returns a number never returned
//     before by that bucket, even after deletes, rollbacks of other Txs, or a
//     compaction of the store (SetSequence may move it forward).
//   - Slices returned by Get and by a Cursor are valid only for the life of
//     the Tx and must not be modified. Put's key and value must stay valid
//     and unmodified until the Tx ends (bbolt keeps them until commit). The
//     key given to Get, Delete and Seek is the caller's again once the call
//     returns: an implementation copies what it keeps (the record layer
//     reuses one buffer for those keys, see lookupKey in record.go).
//   - Names: buckets are named by byte strings; the record layer uses the
//     top-level buckets "psbase" (meta), "records" and "indexes", and one
//     nested bucket per index inside "indexes".
//
// Reads that can fail: Get and the Cursor methods return no error. A
// backend whose reads go over a network (etcd) keeps the first failed read:
// the read returns nil, a writable Tx's Commit returns that error and writes
// nothing, and a read-only Tx's Commit and Rollback return it, so a caller
// that ends a read-only Tx must check what Rollback (or Commit) returns
// before it trusts what it read. bbolt's reads cannot fail this way.
//
// A Tx is used by one goroutine at a time.
//
// # What the seam costs
//
// Calling bbolt through these interfaces adds no allocation, with two rules
// the record layer keeps: a key handed to Get, Seek or Delete does not live
// in the caller's stack frame (an interface call lets it escape: the record
// layer looks records up with a buffer in its Tx, lookupKey in record.go),
// and each Cursor is one allocation (bbolt's cursor, which a direct call keeps
// on the stack, moves to the heap behind the interface). The test and the
// benchmark that measure both paths are in internal/boltkv/seam_test.go.
package kv

// May touch: nothing (an interface).

// Tx is one transaction.
type Tx interface {
	// Writable reports whether the transaction may write.
	Writable() bool
	// Bucket returns the top-level bucket called name, or nil.
	Bucket(name []byte) Bucket
	// CreateBucket creates a top-level bucket; it is an error if it exists.
	CreateBucket(name []byte) (Bucket, error)
	// DeleteBucket removes a top-level bucket and everything in it.
	DeleteBucket(name []byte) error
	// Commit makes a writable transaction's changes durable and ends it;
	// for a read-only transaction it is Rollback.
	Commit() error
	// Rollback discards the transaction's changes and ends it.
	Rollback() error
}

// Bucket is an ordered map of byte keys to byte values, with a sequence and
// nested buckets.
type Bucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	Cursor() Cursor

	Sequence() uint64
	SetSequence(v uint64) error
	NextSequence() (uint64, error)

	// Bucket returns the nested bucket called name, or nil.
	Bucket(name []byte) Bucket
	CreateBucket(name []byte) (Bucket, error)
	DeleteBucket(name []byte) error
	// ForEachBucket calls fn with the name of every nested bucket, in order.
	ForEachBucket(fn func(name []byte) error) error
}

// Cursor walks one bucket in key order. Each method returns the key and
// value it lands on, or a nil key past either end.
type Cursor interface {
	First() (key, value []byte)
	Last() (key, value []byte)
	Seek(seek []byte) (key, value []byte)
	Next() (key, value []byte)
	Prev() (key, value []byte)
}

// Abandoner is implemented by transactions that must not be ended normally
// after their storage failed under them (a bbolt panic leaves bbolt's own
// mutexes held, so its Rollback and Close would deadlock). Abandon ends the
// transaction without touching the storage again and frees the lock.
type Abandoner interface {
	Abandon()
}

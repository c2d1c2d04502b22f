package backend

// feed.go: the capabilities a backend may offer beyond Begin, for the
// change feed (Store.Watch: wait for another host's commit instead of
// polling) and for building an index larger than one of its commits
// (CreateIndex in chunks under one lock).
//
// May touch: nothing (interfaces only).

import (
	"context"

	"github.com/psbase/psbase/internal/kv"
)

// Feed is a Backend that can wait for a commit to one key, from any
// process or host sharing the store.
type Feed interface {
	// Position returns where tx's snapshot stands in the backend's history
	// (etcd: the revision it reads at); ok is false for a transaction of
	// another backend.
	Position(tx kv.Tx) (pos int64, ok bool)
	// WaitChange blocks until a commit after pos wrote or deleted key in
	// the bucket at path, then returns nil; or until ctx ends (an error
	// wrapping ctx.Err()). It never sleeps through a commit after pos, also
	// across reconnects. It may return nil early when it cannot tell (the
	// backend's history after pos was compacted): the caller reads again.
	WaitChange(ctx context.Context, pos int64, path [][]byte, key []byte) error
}

// Chunker is a writable kv.Tx of a backend whose commits are bounded (etcd:
// operations and bytes per transaction) that can commit what it has
// buffered so far and go on under the same lock. Only a caller whose
// intermediate states are invisible to readers may use it (CreateIndex
// writes an index no schema names yet).
type Chunker interface {
	// Full reports whether the buffered writes are close enough to the
	// backend's bound that the caller should Flush before writing more
	// (leaving room for a small final commit).
	Full() bool
	// Flush commits the buffered writes, keeps the lock, and moves the
	// transaction's snapshot to the state just committed.
	Flush() error
}

package etcdkv

// watch.go: the backend's backend.Feed (waiting for a commit to one key
// with etcd's Watch, resumed from the reader's own revision) and the Tx's
// backend.Chunker (committing a long build in bounded pieces under one
// lock).
//
// May touch: the store's keys in etcd (a watch on one key; Flush's fenced
// Txn), the client's watch streams.

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/kv"
)

var (
	_ backend.Feed    = (*Backend)(nil)
	_ backend.Chunker = (*Tx)(nil)
)

// Position returns the etcd revision a transaction of this backend reads at.
func (b *Backend) Position(t kv.Tx) (int64, bool) {
	tx, ok := t.(*Tx)
	if !ok || tx.b != b {
		return 0, false
	}
	return tx.rev, true
}

// rewatchBackoff paces re-creating a watch the server ended (no leader, a
// stream broken): long enough not to spin, short beside an election.
const rewatchBackoff = 100 * time.Millisecond

// WaitChange blocks until a commit after revision pos put or deleted key in
// the bucket at path. The watch starts at pos+1, so a commit that landed
// between the caller's read and this call is in etcd's history and returns
// at once; the client resumes a broken stream from the last revision it
// delivered, and a watch the server ends is re-created from pos+1 again.
// If etcd compacted past pos+1 the history cannot tell: it returns nil (the
// caller reads again, at the current revision).
func (b *Backend) WaitChange(ctx context.Context, pos int64, path [][]byte, key []byte) error {
	k := b.l.data(path) + string(key)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	if f := b.cfg.weak.feed.beforeWatch; f != nil {
		f()
	}
	for {
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if closed {
			return psbase.ErrClosed
		}
		var opts []clientv3.OpOption
		if !b.cfg.weak.feed.noResume {
			opts = append(opts, clientv3.WithRev(pos+1))
		}
		for resp := range b.cli.Watch(wctx, k, opts...) {
			switch {
			case resp.CompactRevision != 0:
				if b.cfg.weak.feed.compactedSleeps {
					pos, _ = b.revision(ctx, "watch")
					continue
				}
				return nil
			case len(resp.Events) > 0:
				return nil
			case resp.Err() != nil:
				b.log.Debug("psbase etcd: watch ended; watching again", "store", b.cfg.Name, "from", pos+1, "err", resp.Err())
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("etcd watch of store %q: %w", b.cfg.Name, err)
		}
		t := time.NewTimer(rewatchBackoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("etcd watch of store %q: %w", b.cfg.Name, ctx.Err())
		case <-t.C:
		}
	}
}

// flushMargin is the room Full leaves in a commit for the caller's final
// writes (the schema, the change log's entry and meta keys).
const flushMargin = 16

// Full reports whether the buffer has reached the backend's bound, less
// room for a small final commit: half the request bytes, or the operation
// limit less flushMargin.
func (t *Tx) Full() bool {
	ops := t.ops()
	if len(ops) >= max(1, t.b.cfg.MaxTxnOps-flushMargin) {
		return true
	}
	size := 0
	for _, o := range ops {
		size += len(o.key) + len(o.end) + len(o.val) + 16
	}
	return size >= t.b.cfg.MaxRequestBytes/2
}

// Flush commits the buffered writes as one fenced etcd Txn (as Commit
// does: above the limits it is a *TxTooLargeError, a lost fence a
// *LockLostError) and keeps the transaction and its lock: its snapshot
// moves to the revision of that commit, which holds exactly the old
// snapshot and these writes (the fence excluded every other writer).
func (t *Tx) Flush() error {
	if err := t.writeCheck(); err != nil {
		return err
	}
	if t.err != nil {
		return t.err
	}
	ops := t.ops()
	if len(ops) == 0 {
		return nil
	}
	resp, err := t.fencedCommit(ops, "a part of ")
	if err != nil {
		return err
	}
	t.rev = resp.Header.Revision
	t.buf, t.cleared = nil, nil
	t.cache = map[string]cached{}
	return nil
}

// feedWeakness switches off one guarantee of WaitChange, for the negative
// controls.
type feedWeakness struct {
	noResume        bool   // watch from the current revision, not from the reader's
	compactedSleeps bool   // on a compacted history, go on watching from now instead of waking
	beforeWatch     func() // called after the reader's read, before the watch starts
}

// Weaken breaks one guarantee of the change feed on purpose, for the
// negative controls of this module's tests: "watch-no-resume" (the watch
// starts at the current revision, so a commit between the reader's read and
// its wait is slept through) or "watch-compacted-sleeps" (a compacted
// history is taken for "nothing happened"). beforeWatch, if set, runs in
// WaitChange before the watch starts (a test makes a commit land there).
// Never use it outside tests.
func (c *Config) Weaken(knob string, beforeWatch func()) error {
	switch knob {
	case "":
	case "watch-no-resume":
		c.weak.feed.noResume = true
	case "watch-compacted-sleeps":
		c.weak.feed.compactedSleeps = true
	default:
		return fmt.Errorf("%w: no knob %q", psbase.ErrOption, knob)
	}
	c.weak.feed.beforeWatch = beforeWatch
	return nil
}

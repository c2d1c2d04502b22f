package etcdkv

// watch_test.go: WaitChange (resumed from the reader's revision, woken by a
// commit of another process, early on a compacted history) and Flush/Full
// (a build above the limits in pieces under one lock), each with its broken
// variant.
//
// May touch: the shared cluster (its own store names; one Compact of the
// cluster's history), worker processes.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/internal/kv"
)

// positionAfterRead writes the counter once and returns the revision of a
// read that saw it.
func positionAfterRead(t *testing.T, b *Backend) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Update(ctx, "seed", func(tx kv.Tx) error { return writeCounter(tx, readCounter(tx)+1) }); err != nil {
		t.Fatal(err)
	}
	tx, err := b.Begin(ctx, false, "read")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	pos, ok := b.Position(tx)
	if !ok || pos <= 0 {
		t.Fatalf("position %d %v", pos, ok)
	}
	return pos
}

// incrInWorker has another process commit n increments, and waits for it.
func incrInWorker(t *testing.T, b *Backend, n int) {
	t.Helper()
	w := startWorker(t, workerSpec{Mode: "incr", Endpoints: b.cfg.Endpoints, Name: b.cfg.Name, TTL: 2 * time.Second, N: n})
	if ack, unknown, failed := w.outcomes(t, 60*time.Second); ack != n {
		t.Fatalf("worker: %d acked, %d unknown, %d failed of %d", ack, unknown, failed, n)
	}
}

// waitFor runs WaitChange on the counter key from pos, bounded by d.
func waitFor(b *Backend, pos int64, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return b.WaitChange(ctx, pos, [][]byte{counterBucket}, counterKey)
}

// A commit by another process after the reader's read, before its wait,
// wakes the wait: the watch starts at the read's revision. The broken
// variant (watching from now) sleeps through it.
func TestWaitChangeResumesFromTheRead(t *testing.T) {
	if testing.Short() {
		t.Skip("etcd cluster")
	}
	eps := cluster(t).Endpoints()
	for _, knob := range []string{"", "watch-no-resume"} {
		t.Run("knob="+knob, func(t *testing.T) {
			b := open(t, eps, storeName(t), func(c *Config) { _ = c.Weaken(knob, nil) })
			pos := positionAfterRead(t, b)
			incrInWorker(t, b, 1) // lands between the read and the wait
			if knob == "" {
				if err := waitFor(b, pos, 60*time.Second); err != nil {
					t.Fatalf("a commit after the read did not wake the wait: %v", err)
				}
				// Nothing after the latest read: the wait blocks until a commit.
				pos2 := positionAfterRead(t, b) // (its own seed commit is before the read)
				done := make(chan error, 1)
				go func() { done <- waitFor(b, pos2, 60*time.Second) }()
				incrInWorker(t, b, 1)
				if err := <-done; err != nil {
					t.Fatalf("a commit during the wait did not wake it: %v", err)
				}
				return
			}
			if err := waitFor(b, pos, 3*time.Second); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("the broken variant woke (%v): the test cannot tell a resumed watch from one started now", err)
			}
		})
	}
}

// A history compacted past the read's revision wakes the wait (the caller
// reads again); the broken variant takes it for silence and sleeps.
func TestWaitChangeCompacted(t *testing.T) {
	if testing.Short() {
		t.Skip("etcd cluster")
	}
	eps := cluster(t).Endpoints()
	for _, knob := range []string{"", "watch-compacted-sleeps"} {
		t.Run("knob="+knob, func(t *testing.T) {
			b := open(t, eps, storeName(t), func(c *Config) { _ = c.Weaken(knob, nil) })
			pos := positionAfterRead(t, b)
			incrInWorker(t, b, 2)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			now, err := b.revision(ctx, "test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Client().Compact(ctx, now); err != nil {
				t.Fatal(err)
			}
			err = waitFor(b, pos, map[string]time.Duration{"": 60 * time.Second}[knob]+3*time.Second)
			switch {
			case knob == "" && err != nil:
				t.Fatalf("a compacted history did not wake the wait: %v", err)
			case knob != "" && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("the broken variant woke (%v)", err)
			}
		})
	}
}

// The wait ends with its context, naming the store.
func TestWaitChangeContext(t *testing.T) {
	if testing.Short() {
		t.Skip("etcd cluster")
	}
	b := open(t, cluster(t).Endpoints(), storeName(t), nil)
	pos := positionAfterRead(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.WaitChange(ctx, pos, [][]byte{counterBucket}, counterKey)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), b.cfg.Name) {
		t.Fatalf("%v", err)
	}
}

// A write of 200 keys with max_txn_ops=32 commits in pieces under one lock
// (Full, Flush), reads its own flushed writes, and holds the lock
// throughout; the same write in one Commit is ErrTxTooLarge.
func TestFlushInPieces(t *testing.T) {
	if testing.Short() {
		t.Skip("etcd cluster")
	}
	eps := cluster(t).Endpoints()
	for _, chunked := range []bool{true, false} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			b := open(t, eps, storeName(t), func(c *Config) { c.MaxTxnOps = 32 })
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tx, err := b.begin(ctx, true, "build")
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			bk, err := tx.CreateBucket([]byte("big"))
			if err != nil {
				t.Fatal(err)
			}
			flushes := 0
			for i := range 200 {
				if err := bk.Put([]byte(strconv.Itoa(i)), []byte("v")); err != nil {
					t.Fatal(err)
				}
				if chunked && tx.Full() {
					if err := tx.Flush(); err != nil {
						t.Fatal(err)
					}
					flushes++
				}
			}
			if !chunked {
				if err := tx.Commit(); !errors.Is(err, psbase.ErrTxTooLarge) {
					t.Fatalf("one commit of 200 puts at max_txn_ops=32: %v", err)
				}
				return
			}
			if flushes < 200/32 {
				t.Fatalf("%d flushes", flushes)
			}
			// The flushed keys read back in the same transaction, and the
			// lock is still ours: the final commit's fence passes.
			if v := tx.Bucket([]byte("big")).Get([]byte("7")); string(v) != "v" {
				t.Fatalf("a flushed key reads %q", v)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			n := 0
			if err := b.View(ctx, func(tx kv.Tx) error {
				c := tx.Bucket([]byte("big")).Cursor()
				for k, _ := c.First(); k != nil; k, _ = c.Next() {
					n++
				}
				return nil
			}); err != nil || n != 200 {
				t.Fatalf("%d keys, %v", n, err)
			}
		})
	}
}

//go:build linux

package psbase

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/psbase/psbase/internal/boltkv"
	"github.com/psbase/psbase/internal/lock"
	bolt "go.etcd.io/bbolt"
)

// combine.go: the combiner of group commit (see groupcommit.go for the
// protocol): holding the store's exclusive lock, it takes every queued
// request, applies them with its own operation in one transaction, writes
// their idempotency records, commits once, and publishes each result.
//
// May touch: the database (through openBolt, under the held lock) and the
// queue file (through gcQueue).

// combinerKV is the combiner's transaction on the storage seam: ending it
// ends only the bbolt transaction (the combiner holds the file and the lock
// across a batch and its redos).
type combinerKV struct {
	boltkv.Tx
	h *boltFile
}

// Abandon gives the handle up (see boltFile); the combiner releases the lock.
func (c combinerKV) Abandon() { c.h.abandon() }

// gcItem is one operation of a batch.
type gcItem struct {
	op     *gcOp
	res    *gcResult
	slot   int // -1: the combiner's own operation
	q      *gcQueue
	req    [16]byte
	done   bool // res is final before this transaction (from its record or its slot)
	record bool // an idempotency record is written for it
}

// combine applies own (or mine's operation) and every queued operation in
// one transaction, publishes their results and releases g.
func (s *Store) combine(g *lock.Grant, own *gcOp, mine *gcMine) (*gcResult, error) {
	released := false
	release := func() {
		if !released {
			released = true
			g.Release()
		}
	}
	defer release()
	h, err := s.openBolt(true)
	if err != nil {
		return s.combineFailed(mine, err)
	}
	closeH := func() {
		if !h.abandoned() {
			_ = h.close()
		}
	}
	tx, err := s.combinerTx(h)
	if err != nil {
		closeH()
		return s.combineFailed(mine, err)
	}
	var items []*gcItem
	if own != nil {
		items = append(items, &gcItem{op: own, slot: -1})
	}
	// Take the queued operations: only in a format with idempotency
	// records (an older store's submitters each get the lock in turn).
	var queues []*gcQueue
	if tx.format >= 2 {
		if q, err := s.gc.ensure(s); err != nil {
			s.logf(context.Background(), slog.LevelWarn, "group commit: queue not usable", "err", err)
		} else if q != nil {
			queues = append(queues, q)
		}
		if mine != nil && (len(queues) == 0 || queues[0] != mine.q) {
			queues = append(queues, mine.q)
		}
	}
	var mineItem *gcItem
	reqs := tx.kt.Bucket(bucketRequests)
	for _, q := range queues {
		taken, _ := q.takeAll(os.Getpid())
		for _, t := range taken {
			it := &gcItem{slot: t.slot, q: q, req: t.req}
			if mine != nil && q == mine.q && t.slot == mine.slot && t.req == mine.req {
				mineItem = it
			}
			if !s.cfg.weak.gcNoRecords {
				if res, ok := recordedResult(reqs, q.qid, t.slot, t.req); ok {
					it.res, it.done = res, true // committed by a combiner that died before publishing
					items = append(items, it)
					continue
				}
			}
			if t.dead {
				q.free(t.slot) // its submitter died before anyone applied it
				continue
			}
			op, err := decodeOp(t.payload)
			if err != nil {
				it.res, it.done = &gcResult{err: err}, true
			}
			it.op, it.record = op, true
			items = append(items, it)
		}
	}
	if mine != nil && mineItem == nil {
		// Not taken now: done by an earlier batch, or (its slot was reset
		// or withdrawn) in no batch at all.
		mineItem = &gcItem{slot: -1}
		if res, done := mine.q.result(mine.slot, mine.req); done {
			mineItem.res, mineItem.done = res, true
		} else if withdrew := mine.q.withdraw(mine.slot); withdrew || tx.format < 2 {
			mineItem.op = mine.op
		} else if res, ok := recordedResult(reqs, mine.q.qid, mine.slot, mine.req); ok {
			mineItem.res, mineItem.done = res, true
		} else {
			mineItem.op = mine.op // never applied: its slot was reset under it
		}
		items = append(items, mineItem)
	}
	if own != nil {
		mineItem = items[0]
	}
	others := 0
	for _, it := range items {
		if it.q != nil && it != mineItem {
			others++
		}
	}
	if s.cfg.weak.gcStage != nil {
		s.cfg.weak.gcStage("taken", others)
	}

	// Apply, redoing without an operation that failed after writing.
	var commitErr error
	for attempt := 0; ; attempt++ {
		redo := false
		for _, it := range items {
			if it.done {
				continue
			}
			res := applyOp(tx, it.op)
			if res.err != nil && !refusedBeforeWrite(res.err) {
				it.res, it.done = res, true // it fails alone, the rest again
				redo = true
				break
			}
			if it.slot >= 0 {
				if _, err := encodeResult(res, gcPayloadMax); err != nil && res.err == nil {
					it.res, it.done = &gcResult{err: errRetryDirect}, true
					redo = true
					break
				}
			}
			it.res = res
		}
		if tx.broken {
			commitErr = errorf(ErrCorrupt, "bbolt failed on the file while combining writes")
			break
		}
		if !redo {
			if s.cfg.weak.feedLogFirst && !tx.feed.logged {
				ntx, err := s.weakLogFirst(tx, h, others)
				if err != nil {
					commitErr = err
					break
				}
				tx = ntx // the batch again, on a transaction that logs nothing
				continue
			}
			commitErr = s.commitBatch(tx, g, h, items)
			if commitErr == nil && s.cfg.weak.gcStage != nil {
				s.cfg.weak.gcStage("committed", others)
			}
			break
		}
		_ = tx.finish(false)
		ntx, err := s.combinerTx(h)
		if err != nil {
			commitErr = err // tx is finished: finishing it again below is ErrTxDone
			break
		}
		tx = ntx
	}
	if commitErr != nil {
		_ = tx.finish(false)
		for _, it := range items {
			if !it.done {
				it.res = &gcResult{err: commitErr}
			}
		}
	} else {
		n := 0
		for _, it := range items {
			if !it.done {
				n++
			}
		}
		s.gc.batches.Add(1)
		s.gc.ops.Add(uint64(n))
		s.met.batchSize.observe(float64(n))
	}
	closeH()
	// Publish every taken slot's result, then wake the submitters, then
	// (deferred) release the lock: invariant 2.
	woken := map[*gcQueue]bool{}
	for _, it := range items {
		if it.q == nil || it == mineItem {
			continue
		}
		enc, err := encodeResult(it.res, gcPayloadMax)
		if err != nil {
			enc, _ = encodeResult(&gcResult{err: errRetryDirect}, gcPayloadMax)
		}
		it.q.done(it.slot, enc)
		woken[it.q] = true
	}
	if mineItem != nil && mineItem.q != nil {
		mineItem.q.free(mineItem.slot) // our own slot: nobody else reads it
	}
	for q := range woken {
		q.wake()
	}
	release()
	if mineItem == nil || mineItem.res == nil {
		return nil, nil // a waiter's batch: no operation of its own
	}
	return s.directIfAsked(mineItem.res)
}

// combineFailed ends a submitter's wait when the combiner could not even
// start (the file does not open, its format is refused): its request, if
// still in its slot, is withdrawn, and err is its outcome.
func (s *Store) combineFailed(mine *gcMine, err error) (*gcResult, error) {
	if mine == nil || mine.q.withdraw(mine.slot) {
		return nil, err
	}
	if res, done := mine.q.result(mine.slot, mine.req); done {
		return s.directIfAsked(res) // an earlier batch did it
	}
	return nil, fmt.Errorf("%w: the store could not be opened to finish a queued write (an earlier combiner took it): %v", ErrUnknownOutcome, err)
}

// combinerTx begins a write transaction of the batch on h.
func (s *Store) combinerTx(h *boltFile) (*Tx, error) {
	var btx *bolt.Tx
	err := guarded(h, func() error {
		var err error
		btx, err = h.db.Begin(true)
		return err
	})
	if err != nil {
		return nil, classifyIOError(err)
	}
	tx := &Tx{s: s, op: "combine", kt: combinerKV{Tx: boltkv.Tx{BTx: btx}, h: h}, write: true}
	if err := tx.init(); err != nil {
		_ = tx.finish(false)
		return nil, err
	}
	return tx, nil
}

// commitBatch writes the idempotency records and commits; the write is
// acknowledged only if the lock and the file are still the store's (T20).
func (s *Store) commitBatch(tx *Tx, g *lock.Grant, h *boltFile, items []*gcItem) error {
	need, wrote := false, false
	for _, it := range items {
		if !it.done && it.res != nil && it.res.err == nil {
			wrote = true
			// A record only for what was applied: a refused operation
			// wrote nothing, and running it again refuses it again.
			need = need || it.record
		}
	}
	if !need && !wrote {
		// Every operation was refused: nothing to commit, and a commit
		// would still write a meta page.
		return tx.finish(false)
	}
	if need {
		old, err := tx.enter(true)
		if err != nil {
			return err
		}
		err = func() (err error) {
			defer tx.exit(old, &err)
			reqs := tx.kt.Bucket(bucketRequests)
			if reqs == nil {
				if reqs, err = tx.kt.CreateBucket(bucketRequests); err != nil {
					return err
				}
				if tx.format < FormatVersion {
					if err := setFormat(tx.meta, FormatVersion); err != nil {
						return err
					}
				}
			}
			for _, it := range items {
				if !it.record || it.done || it.res.err != nil {
					continue
				}
				enc, err := encodeResult(it.res, gcPayloadMax)
				if err != nil {
					return err
				}
				if err := reqs.Put(requestKey(it.q.qid, it.slot), append(append([]byte{}, it.req[:]...), enc...)); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	if err := tx.finish(true); err != nil {
		return err
	}
	if s.cfg.weak.noCommitCheck {
		return nil
	}
	if err := fromLock(g.StillHeld()); err != nil {
		return err
	}
	return stillTheStore(s.path, h.file)
}

// requestKey is an idempotency record's key: the queue's ID and the slot.
func requestKey(qid [16]byte, slot int) []byte {
	return append(append(make([]byte, 0, 18), qid[:]...), byte(slot>>8), byte(slot))
}

// recordedResult returns the result that the idempotency record of (qid,
// slot) holds for request req, if it holds that request: then a combiner
// committed it and died before publishing.
func recordedResult(reqs interface{ Get([]byte) []byte }, qid [16]byte, slot int, req [16]byte) (*gcResult, bool) {
	if reqs == nil {
		return nil, false
	}
	rec := reqs.Get(requestKey(qid, slot))
	if len(rec) < 16 || !bytes.Equal(rec[:16], req[:]) {
		return nil, false
	}
	res, err := decodeResult(rec[16:])
	if err != nil {
		res = &gcResult{err: err}
	}
	return res, true
}

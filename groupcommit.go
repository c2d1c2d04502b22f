//go:build linux

package psbase

// groupcommit.go: cross-process group commit. A single write that can
// travel as data (Insert, Update, UpdateByID, Delete, Upsert, Add) is put in
// a slot of the queue beside the store (gcq_linux.go) by a process that
// waits for the store's writer lock; whoever holds that lock applies every
// queued operation, its own included, in ONE bbolt transaction with ONE
// commit, publishes each result in its slot, and only then releases the
// lock. Fifty processes then pay for a handful of commits instead of fifty.
//
// The invariants (each guarded by a test in groupcommit_linux_test.go):
//
//  1. Only the holder of the store's exclusive lock moves a slot out of
//     SUBMITTED or TAKEN.
//  2. A combiner publishes DONE for every slot it took before it releases
//     the lock (after its commit), or dies holding the lock. So a lock
//     holder that finds a TAKEN slot knows that slot's combiner is dead.
//  3. An operation's effect and its idempotency record (queue ID and slot →
//     request ID and result, in the bucket "requests") commit atomically: a
//     combiner killed after its commit and before publishing leaves records
//     from which the next holder reports each result without applying the
//     operation again. Exactly once, and every submitter learns its result.
//  4. A submitter writes its payload while the slot is FREE and publishes
//     with an atomic store of SUBMITTED (payload first).
//  5. A submitter reports success only on DONE, stored after the commit
//     returned and the lock was verified still held (T20).
//
// Waiting: one waiter goroutine per Store queues for the lock like any
// writer (the turnstile keeps its fairness) and combines when it gets it;
// the submitters sleep on the queue's futex word, which every combiner
// bumps and wakes after publishing its batch's results (one word for the
// queue: a word per slot, measured, woke fewer submitters but cost the
// combiner a futex call per served slot under the lock, and gained nothing
// at 200 writers, where a batch serves most of them anyway). A
// submitter whose deadline passes withdraws its request if nobody took it
// (then ErrLockTimeout means "not applied", as always); if a combiner took
// it, the outcome is unknown and the error (ErrUnknownOutcome) names the
// combiner's pid and the request.
//
// Operations that fail validation (ErrSchema, ErrNotFound, ErrConflict,
// ErrDuplicate) are refused before they write anything (records.go), so
// they fail alone; any other failure rolls the batch back and runs it again
// without the failing operation, which gets its error. A result too large
// for a slot makes its operation go back to its submitter, unapplied, to
// run directly. The combiner runs the ordinary record operations, against
// the schema it reads in its own transaction.
//
// May touch: the database (through openBolt, under the held lock) and the
// queue file (gcq_linux.go).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// gcState is a Store's group-commit state.
type gcState struct {
	mu      sync.Mutex
	q       *gcQueue   // the queue submitters use, nil until one is open
	old     []*gcQueue // queues replaced (a deleted queue file): closed by Close
	waiting bool       // the Store's waiter runs (kick)
	made    bool       // this Store tried makeQueue
	checked time.Time  // when ensure last found q at its path
	err     error      // its last attempt's error

	batches, ops atomic.Uint64 // batches this Store's combiners committed, and the operations in them
}

// groupCommitSupported: Linux (futexes, OFD locks).
const groupCommitSupported = true

// errRetryDirect: the combiner did not apply the operation (its result does
// not fit a slot); its submitter runs it directly.
var errRetryDirect = errors.New("run directly")

// queue returns the queue for a submitter, opening it if it is ready.
func (g *gcState) queue(s *Store) *gcQueue {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.q != nil && !g.q.broken.Load() {
		return g.q
	}
	uid := s.dbOwner()
	q, err := openQueue(s.path, uid, s.cfg.fileMode, false)
	if err == nil && q == nil && !g.made && makeQueue(s.path, s.cfg.fileMode) {
		g.made = true // once per Store: a queue that then does not open is left to the lock holder
		q, err = openQueue(s.path, uid, s.cfg.fileMode, false)
	}
	if err != nil {
		s.logf(context.Background(), slog.LevelDebug, "group commit: queue not usable", "err", err)
		return nil
	}
	if q != nil {
		g.retireLocked()
		g.q = q
	}
	return q
}

// ensure returns the queue for a combiner (the exclusive lock is held),
// creating or resetting it as needed; a queue file that was deleted or
// replaced is reopened (the old one stays open for the requests still in
// it).
func (g *gcState) ensure(s *Store) (*gcQueue, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// Whether the queue file is still the one at its path (a tmp cleaner
	// may delete it) is looked at once a second, not per batch: a combiner
	// on a replaced queue is only slower (the new queue's submitters get
	// the lock through their own waiters), never wrong.
	if g.q != nil && !g.q.broken.Load() {
		if time.Since(g.checked) < time.Second {
			return g.q, nil
		}
		if g.q.current() {
			g.checked = time.Now()
			return g.q, nil
		}
	}
	q, err := openQueue(s.path, s.dbOwner(), s.cfg.fileMode, true)
	if err != nil || q == nil {
		return nil, err
	}
	g.retireLocked()
	g.q, g.checked = q, time.Now()
	return q, nil
}

func (g *gcState) retireLocked() {
	if g.q != nil {
		g.old = append(g.old, g.q)
		g.q = nil
	}
}

// close closes every queue (Store.Close). A queue that still holds a
// request of this Store stays mapped: the call waiting for it finishes
// normally, as a transaction begun before Close does.
func (g *gcState) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.retireLocked()
	var keep []*gcQueue
	for _, q := range g.old {
		if q.ownPending() {
			keep = append(keep, q)
			continue
		}
		q.close()
	}
	g.old = keep
}

func (g *gcState) stats() (batches, ops uint64) { return g.batches.Load(), g.ops.Load() }

// dbOwner is the database file's owner (the queue file must be its, the
// caller's or root's).
func (s *Store) dbOwner() int {
	if fi, err := os.Stat(s.path); err == nil {
		if uid, _, ok := fileOwner(fi); ok {
			return uid
		}
	}
	return os.Geteuid()
}

// gcMine is a submitter's own request, in its slot.
type gcMine struct {
	q    *gcQueue
	slot int
	req  [16]byte
	op   *gcOp
}

// submit runs op through group commit. It returns errNotCombinable when op
// must run directly instead (group commit off, op not encodable, no slot).
// Otherwise the result's err is op's own error, and the returned error
// one of waiting: ErrLockTimeout (not applied) or ErrUnknownOutcome.
func (s *Store) submit(ctx context.Context, name string, op *gcOp) (*gcResult, error) {
	if s.cfg.noGroupCommit || s.closed.Load() {
		return nil, errNotCombinable
	}
	if ctx == nil {
		ctx = context.Background()
	}
	payload, err := encodeOp(op, gcPayloadMax)
	if err != nil {
		return nil, errNotCombinable
	}
	caller := ctx // its deadline bounds the wait for a combiner that took the request
	if s.cfg.lockTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.lockTimeout)
		defer cancel()
	}
	if ctx.Err() != nil {
		_, err := s.acquire(ctx, name, true, false) // the ErrLockTimeout of a done context
		return nil, err
	}
	// The lock is free (a lone writer, or a quiet moment): take it and
	// combine at once, with no queue round trip.
	if !s.gc.busy() {
		if g, ok, err := s.lock.TryAcquire(true, name); err == nil && ok {
			return s.combine(g, op, nil)
		}
	}
	q := s.gc.queue(s)
	if q == nil {
		// No queue yet: take the lock as any writer; the combiner makes
		// the queue for the next ones.
		g, err := s.acquire(ctx, name, true, false)
		if err != nil {
			return nil, err
		}
		return s.combine(g, op, nil)
	}
	slot, ok := q.claim()
	if !ok {
		return nil, errNotCombinable
	}
	defer q.unclaim(slot)
	var req [16]byte
	randomID(req[:])
	if !q.publish(slot, req, payload) {
		return nil, errNotCombinable
	}
	start := time.Now()
	s.gc.kick(s, q)
	// Until a combiner takes the request, the wait is the lock's (the lock
	// timeout applies, as to any writer waiting for the lock). Once taken,
	// the request is as good as holding the lock: the wait is bounded by
	// the caller's own deadline, or without one by a fresh lock timeout (a
	// stopped combiner must not hang it).
	wait := ctx
	taken := false
	for {
		seq, ok := q.seq()
		if res, done := q.result(slot, req); done {
			return s.directIfAsked(res)
		}
		if !ok {
			break // the queue file failed under us
		}
		if st, mine := q.state(slot, req); st == gcFree || !mine {
			// The slot was reset under us (a holder of the lock found the
			// queue damaged or of another psbase version): never applied.
			if ctx.Err() == nil {
				return nil, errNotCombinable
			}
			return nil, fromLock(s.lock.Timeout(ctx, true, name, start))
		}
		if st, _ := q.state(slot, req); st == gcTaken && !taken {
			taken = true
			if _, ok := caller.Deadline(); ok || s.cfg.lockTimeout <= 0 {
				wait = caller
			} else {
				var cancel context.CancelFunc
				wait, cancel = context.WithTimeout(caller, s.cfg.lockTimeout)
				defer cancel()
			}
		}
		if werr := s.gc.waiterError(); werr != nil && q.withdraw(slot) {
			return nil, werr // the lock could not be had (the store is gone...)
		}
		if wait.Err() != nil {
			break
		}
		q.wait(wait, seq)
	}
	if q.withdraw(slot) {
		// Nobody took it: not applied.
		if err := s.gc.waiterError(); err != nil && ctx.Err() == nil {
			return nil, err
		}
		return nil, fromLock(s.lock.Timeout(ctx, true, name, start))
	}
	if res, done := q.result(slot, req); done {
		return s.directIfAsked(res)
	}
	cause := context.Cause(wait)
	if cause == nil {
		cause = errors.New("the queue file failed")
	}
	return nil, fmt.Errorf("%w: the %s (request %x) was taken by process %d to be committed with others, which had not finished when the wait ended (%v); it may or may not have been applied: read it back before retrying",
		ErrUnknownOutcome, name, req[:6], q.takenBy(slot), cause)
}

// kick makes sure this Store has its waiter: the one goroutine that queues
// for the store's writer lock on behalf of every request this Store has in
// the queue, and combines when it gets the lock. One waiter per Store, never
// abandoned while requests are pending: a waiter per request, abandoned as
// soon as another process had combined it, would leave a kernel wait behind
// per request (T23), and each would hold the lock once for nothing.
func (g *gcState) kick(s *Store, q *gcQueue) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waiting {
		return
	}
	g.waiting = true
	g.err = nil
	go s.gcWaiter(q)
}

// busy reports whether this Store's waiter is queued for the lock (then a
// new request joins the queue rather than trying to jump ahead of it).
func (g *gcState) busy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// waiterError is the error of the waiter's last attempt at the lock, nil if
// it succeeded or is still waiting.
func (g *gcState) waiterError() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// gcWaiter is a Store's waiter (see kick).
func (s *Store) gcWaiter(q *gcQueue) {
	for {
		g, err := s.acquire(context.Background(), "combine", true, false)
		if err == nil {
			if q.anyQueued() {
				_, _ = s.combine(g, nil, nil)
			} else {
				g.Release()
			}
		}
		s.gc.mu.Lock()
		s.gc.err = err
		if err != nil || !q.ownPending() || s.closed.Load() {
			s.gc.waiting = false
			s.gc.mu.Unlock()
			if err != nil {
				q.wake() // the submitters learn the error
			}
			return
		}
		s.gc.mu.Unlock()
	}
}

// directIfAsked turns a "run directly" result into errNotCombinable.
func (s *Store) directIfAsked(res *gcResult) (*gcResult, error) {
	if errors.Is(res.err, errRetryDirect) {
		return nil, errNotCombinable
	}
	return res, nil
}

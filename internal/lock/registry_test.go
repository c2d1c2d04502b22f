package lock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

// The in-process lock: FIFO, writers not starved, cancellation unblocks
// those queued behind a cancelled writer.
func TestProcLock(t *testing.T) {
	p := &procLock{token: make(chan struct{}, 1)}
	ctx := context.Background()
	if err := p.lock(ctx, false); err != nil {
		t.Fatal(err)
	}
	// A writer queues behind the reader; a later reader queues behind it.
	wctx, wcancel := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() { werr <- p.lock(wctx, true) }()
	for {
		p.mu.Lock()
		n := len(p.queue)
		p.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	rerr := make(chan error, 1)
	go func() { rerr <- p.lock(ctx, false) }()
	select {
	case <-rerr:
		t.Fatal("a reader passed a queued writer")
	case <-time.After(50 * time.Millisecond):
	}
	// Cancelling the writer lets the reader in.
	wcancel()
	if err := <-werr; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := <-rerr; err != nil {
		t.Fatal(err)
	}
	p.unlock(false)
	p.unlock(false)
	if p.readers != 0 || p.writer || len(p.queue) != 0 {
		t.Fatalf("state %+v", p)
	}
	// Order of grants is FIFO.
	if err := p.lock(ctx, true); err != nil {
		t.Fatal(err)
	}
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			_ = p.lock(ctx, true)
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			p.unlock(true)
		})
		for { // queue them in order
			p.mu.Lock()
			n := len(p.queue)
			p.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	p.unlock(true)
	wg.Wait()
	if !sort.IntsAreSorted(order) {
		t.Fatalf("grant order %v, want FIFO", order)
	}
}

// TestAbandonedWaitGoesFirst: while a kernel wait that an earlier
// acquisition abandoned is still queued (it holds the token), a new
// acquisition of the same process takes no kernel lock: had it taken the
// gate, it would then wait for the token the abandoned wait holds, and that
// wait for the gate — a deadlock with itself (group commit's waiters
// abandon theirs all the time). The negative control skips the wait: the
// gate is then taken while the abandoned wait is queued.
func TestAbandonedWaitGoesFirst(t *testing.T) {
	for _, drain := range []bool{true, false} {
		db := filepath.Join(t.TempDir(), "s.db")
		if err := os.WriteFile(db, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		l := newTestFile(t, db, protoTurnstile)
		l.noDrain = !drain
		rel, _, err := l.acquire(context.Background(), true, "setup")
		if err != nil {
			t.Fatal(err)
		}
		rel()
		pl := procLocks.get(*l.key.Load())
		pl.token <- struct{}{} // stands for the abandoned wait
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		res := make(chan error, 1)
		var grant *Grant
		go func() {
			var err error
			grant, _, err = l.Acquire(ctx, true, "second", false)
			res <- err
		}()
		// Watch the gate from another descriptor while it tries.
		takenGate := false
		for done := false; !done; {
			select {
			case err = <-res:
				done = true
			case <-time.After(5 * time.Millisecond):
				f := flock.New(db+".gate", flock.SetFlag(os.O_RDWR))
				if ok, err := f.TryLock(); err == nil && !ok {
					takenGate = true
				} else if ok {
					_ = f.Unlock()
				}
			}
		}
		if err == nil {
			takenGate = true // it holds the gate and the lock, the wait still queued
		}
		cancel()
		<-pl.token
		procLocks.put(pl)
		if grant != nil {
			grant.Release()
		}
		switch {
		case drain && (takenGate || err == nil):
			t.Errorf("with an abandoned wait pending, the acquisition took the gate (%v) or the lock (%v)", takenGate, err)
		case !drain && !takenGate:
			t.Errorf("negative control: without the wait the acquisition did not take the gate (%v): the test proves nothing", err)
		}
	}
}

// TestTryAcquire: TryAcquire takes a free lock, reports a lock busy in
// this process or behind an abandoned wait (the token held) without
// waiting, and its grant excludes like Acquire's.
func TestTryAcquire(t *testing.T) {
	db := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(db, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newTestFile(t, db, protoTurnstile)
	rel, _, err := l.acquire(context.Background(), true, "setup")
	if err != nil {
		t.Fatal(err)
	}
	// Held (exclusively, in this process): busy, at once.
	start := time.Now()
	if g, ok, err := l.TryAcquire(true, "try"); ok || err != nil || g != nil {
		t.Fatalf("TryAcquire of a held lock: %v %v %v", g, ok, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("TryAcquire waited %v", d)
	}
	rel()
	g, ok, err := l.TryAcquire(true, "try")
	if !ok || err != nil {
		t.Fatalf("TryAcquire of a free lock: %v %v", ok, err)
	}
	// Its grant excludes: another handle's Acquire times out.
	l2 := newTestFile(t, db, protoTurnstile)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if _, _, err := l2.acquire(ctx, true, "other"); !errors.Is(err, ErrTimeout) {
		t.Errorf("Acquire while TryAcquire's grant is held: %v, want a timeout", err)
	}
	cancel()
	g.Release()
	// An abandoned wait pending: busy.
	pl := procLocks.get(*l.key.Load())
	pl.token <- struct{}{}
	if _, ok, err := l.TryAcquire(true, "try"); ok || err != nil {
		t.Errorf("TryAcquire with an abandoned wait pending: %v %v", ok, err)
	}
	<-pl.token
	procLocks.put(pl)
}

package lock

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"
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

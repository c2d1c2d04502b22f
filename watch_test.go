package psbase

// Tests of Store.Watch (watch.go): woken by the file system, the polling
// fallback, the negative control that has neither, the end of the loop,
// falling behind, a store replaced under it.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// startWatch runs a Watch loop in a goroutine, sending what it yields.
type watched struct {
	ch   chan Change
	errc chan error
	done chan struct{} // closed when the loop returned
	stop context.CancelFunc
}

func startWatch(t testing.TB, s *Store, since uint64) *watched {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watched{ch: make(chan Change, 1000), errc: make(chan error, 1), done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(w.done)
		for c, err := range s.Watch(ctx, since) {
			if err != nil {
				w.errc <- err
				return
			}
			w.ch <- c
		}
		w.errc <- nil
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(10 * time.Second):
			t.Error("a Watch loop did not end after its context was cancelled")
		}
	})
	return w
}

// next waits up to d for the next change.
func (w *watched) next(t testing.TB, d time.Duration) (Change, bool) {
	t.Helper()
	select {
	case c := <-w.ch:
		return c, true
	case err := <-w.errc:
		t.Fatalf("the watch ended: %v", err)
	case <-time.After(d):
	}
	return Change{}, false
}

// TestWatchWakes: a commit by another handle (as another process would)
// reaches a Watch loop at once — by the file system's event, since this
// loop has no polling at all — in order, exactly once; Cleanup renaming a
// new file over the store does not lose the watch.
func TestWatchWakes(t *testing.T) {
	ctx := context.Background()
	s, path := newFeedStore(t)
	other, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s, 0)
	if c, ok := w.next(t, 300*time.Millisecond); ok {
		t.Fatalf("a change before any write: %v", c)
	}
	for i := range 5 {
		start := time.Now()
		id := mustInsert(t, other, Values{"tag": fmt.Sprint(i)})
		c, ok := w.next(t, 5*time.Second)
		if !ok || c != (Change{Rev: uint64(i + 1), Kind: ChangeInsert, ID: id}) {
			t.Fatalf("after insert %d: %v %v", id, c, ok)
		}
		t.Logf("commit to the loop: %v", time.Since(start))
		if i == 2 {
			if _, err := other.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if c, ok := w.next(t, 200*time.Millisecond); ok {
		t.Fatalf("a change nobody made: %v", c)
	}
}

// TestWatchPolls: without file-system events (fsnotify failing, here
// turned off) the loop reads the store every WithWatchInterval.
func TestWatchPolls(t *testing.T) {
	s, path := newFeedStore(t, WithWatchInterval(50*time.Millisecond))
	s.cfg.weak.watchNoNotify = true
	other, _ := Open(context.Background(), path)
	w := startWatch(t, s, 0)
	id := mustInsert(t, other, Values{"tag": "x"})
	if c, ok := w.next(t, 5*time.Second); !ok || c.ID != id {
		t.Fatalf("polling watch: %v %v", c, ok)
	}
}

// TestWatchNoWakeControl is the negative control: a loop that neither
// watches nor polls sees what was there when it started and never a later
// commit (the storms must catch exactly this).
func TestWatchNoWakeControl(t *testing.T) {
	s, path := newFeedStore(t)
	s.cfg.weak.watchNoWake = true
	other, _ := Open(context.Background(), path)
	mustInsert(t, other, Values{"tag": "before"})
	w := startWatch(t, s, 0)
	if _, ok := w.next(t, 5*time.Second); !ok {
		t.Fatal("the first read did not see the existing change")
	}
	mustInsert(t, other, Values{"tag": "after"})
	if c, ok := w.next(t, 500*time.Millisecond); ok {
		t.Fatalf("negative control: a loop with no wake-up saw %v", c)
	}
}

// TestWatchEnds: the context's end is yielded once, last, wrapping
// ctx.Err(); breaking out of the loop returns at once.
func TestWatchEnds(t *testing.T) {
	s, _ := newFeedStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	n := 0
	var last error
	for _, err := range s.Watch(ctx, 0) {
		n++
		last = err
	}
	if n != 1 || !errors.Is(last, context.Canceled) {
		t.Fatalf("%d values, last %v; want one, context.Canceled", n, last)
	}
	var pe *Error
	if !errors.As(last, &pe) || pe.Op != "watch" {
		t.Errorf("not an *Error of op watch: %v", last)
	}
	mustInsert(t, s, Values{"tag": "a"})
	mustInsert(t, s, Values{"tag": "b"})
	n = 0
	for c, err := range s.Watch(context.Background(), 0) {
		if err != nil || c.ID != 1 {
			t.Fatalf("%v %v", c, err)
		}
		n++
		break
	}
	if n != 1 {
		t.Fatal("break did not end the loop")
	}
}

// TestWatchFallsBehind: a loop that is slower than the log's retention gets
// ErrChangesGone with the revision to resync from, and a loop whose store
// is restored under it too.
func TestWatchFallsBehind(t *testing.T) {
	ctx := context.Background()
	s, _ := newFeedStore(t, WithChangeRetention(3, 0))
	for i := range 10 {
		mustInsert(t, s, Values{"tag": fmt.Sprint(i)})
	}
	for _, err := range s.Watch(ctx, 2) {
		var ge *ChangesGoneError
		if !errors.As(err, &ge) || ge.Rev != 10 || ge.Oldest != 7 {
			t.Fatalf("watch from 2 with the log at (7, 10]: %v", err)
		}
	}

	backup := filepath.Join(t.TempDir(), "b.db")
	if _, err := s.BackupFile(ctx, backup); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s, 10)
	mustInsert(t, s, Values{"tag": "x"})
	if c, ok := w.next(t, 5*time.Second); !ok || c.Rev != 11 {
		t.Fatalf("%v %v", c, ok)
	}
	if err := s.Restore(ctx, backup); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.errc:
		var ge *ChangesGoneError
		if !errors.As(err, &ge) || ge.Rev != 12 {
			t.Fatalf("a watch across Restore: %v, want ErrChangesGone at revision 12", err)
		}
	case c := <-w.ch:
		t.Fatalf("a watch across Restore went on: %v", c)
	case <-time.After(5 * time.Second):
		t.Fatal("a watch across Restore was not told")
	}
}

// TestWatchReplaced: a store re-created at the path (a new identity) is not
// silently followed, even once its revisions pass the loop's.
func TestWatchReplaced(t *testing.T) {
	ctx := context.Background()
	s, path := newFeedStore(t)
	mustInsert(t, s, Values{"tag": "a"})
	w := startWatch(t, s, 0)
	if _, ok := w.next(t, 5*time.Second); !ok {
		t.Fatal("no first change")
	}
	n, err := Create(ctx, path, feedFields, WithOverwrite())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustInsert(t, n, Values{"tag": fmt.Sprint(i)})
	}
	select {
	case err := <-w.errc:
		if !errors.Is(err, ErrChangesGone) {
			t.Fatalf("a watch of a re-created store: %v", err)
		}
	case c := <-w.ch:
		t.Fatalf("a watch of a re-created store went on: %v", c)
	case <-time.After(5 * time.Second):
		t.Fatal("a watch of a re-created store was not told")
	}
}

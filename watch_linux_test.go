//go:build linux

package psbase

// Linux-only tests of the change feed: a Watch loop releases its inotify
// descriptor and goroutines; a combined batch of group commit is one
// revision.

import (
	"context"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// inotifyFDs counts this process's inotify descriptors.
func inotifyFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.Contains(l, "inotify") {
			n++
		}
	}
	return n
}

// TestWatchReleases: breaking out of the loop, and the context's end, each
// close the directory watch and end its goroutine before the loop returns.
func TestWatchReleases(t *testing.T) {
	s, _ := newFeedStore(t)
	mustInsert(t, s, Values{"tag": "a"})
	fds, gs := inotifyFDs(t), runtime.NumGoroutine()
	for range 20 {
		for _, err := range s.Watch(context.Background(), 0) {
			if err != nil {
				t.Fatal(err)
			}
			if n := inotifyFDs(t); n != fds+1 {
				t.Fatalf("%d inotify descriptors inside the loop, want %d", n, fds+1)
			}
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		for range s.Watch(ctx, 1) {
		}
		cancel()
	}
	if n := inotifyFDs(t); n != fds {
		t.Errorf("%d inotify descriptors after the loops, want %d", n, fds)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > gs && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // goroutines of the test harness settling
	}
	if g := runtime.NumGoroutine(); g > gs {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after the loops, %d before:\n%s", g, gs, buf[:runtime.Stack(buf, true)])
	}
}

// TestChangesCombinedBatch: writes that group commit combined into one
// bbolt transaction are one revision listing all of them; with the weak
// knob that skips recording combined batches they are missing (the
// storms' negative control, seen at the unit level).
func TestChangesCombinedBatch(t *testing.T) {
	for _, skip := range []bool{false, true} {
		ctx := context.Background()
		s, path := newFeedStore(t)
		s.cfg.weak.feedSkipCombined = skip
		mustInsert(t, s, Values{"tag": "first"}) // makes the queue
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := s2.Begin(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		const n = 5
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Insert(ctx, Values{"tag": string(rune('a' + i))}); err != nil {
					t.Error(err)
				}
			}()
		}
		waitSubmittedN(t, path+suffixQueue, n)
		tx.Rollback()
		wg.Wait()
		chs, rev := changesAfter(t, s, 0)
		if skip {
			if len(chs) >= n+1 {
				t.Fatal("negative control: a combined batch was recorded with recording off")
			}
			continue
		}
		if rev != 2 || len(chs) != n+1 {
			t.Fatalf("%d inserts in one combined batch: revision %d, changes %s; want revision 2 with %d inserts", n, rev, fmtChanges(chs), n)
		}
		if st, _ := s.Stats(ctx); st.CombinedOps < n {
			t.Errorf("combined %d ops", st.CombinedOps)
		}
	}
}

// waitSubmittedN waits until n slots of the queue file are submitted.
func waitSubmittedN(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		got := 0
		for i := range gcqSlots {
			off := gcqHeader + i*gcqSlotSize
			if off+4 <= len(b) && b[off] == byte(gcSubmitted) && b[off+1] == 0 {
				got++
			}
		}
		if got >= n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("fewer than %d requests were ever submitted", n)
}

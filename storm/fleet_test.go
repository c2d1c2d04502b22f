//go:build linux || darwin

package storm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunLoopCancel: cancelling the ctx of a loop of Run while its children
// run kills them, and the loop returns at once with ctx's error and each task
// reported as canceled in the phase it was in, long before the loop's
// timeout.
func TestRunLoopCancel(t *testing.T) {
	const procs = 2
	cfg := Config{Procs: procs, Timeout: time.Minute}
	body := func(w *Worker) error {
		w.Phase("sleeping")
		if err := os.WriteFile(filepath.Join(w.Dir, fmt.Sprintf("running-%d", w.Task)), nil, 0o644); err != nil {
			return err
		}
		select {}
	}
	if IsChild() {
		Run(t, cfg, body) // serves the loop below; never returns
	}
	s, err := newStorm(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type cancellation struct {
		at      time.Time
		running bool // every child was running its body
	}
	canceled := make(chan cancellation, 1)
	go func() {
		defer cancel()
		deadline := time.Now().Add(30 * time.Second)
		for task := 0; task < procs; task++ {
			for {
				if _, err := os.Stat(filepath.Join(s.root, "loop-0", fmt.Sprintf("running-%d", task))); err == nil {
					break
				}
				if time.Now().After(deadline) {
					canceled <- cancellation{at: time.Now()}
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		canceled <- cancellation{at: time.Now(), running: true}
	}()
	l, err := s.runLoop(ctx, 0)
	c := <-canceled
	if !c.running {
		t.Fatalf("the children never ran their bodies (loop: %+v, %v)", l, err)
	}
	if d := time.Since(c.at); d > 5*time.Second {
		t.Errorf("the loop returned %v after the cancellation", d)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("runLoop: %v, want %v", err, context.Canceled)
	}
	if l == nil || len(l.Tasks) != procs {
		t.Fatalf("loop %+v", l)
	}
	for _, tr := range l.Tasks {
		if !tr.Failed() || tr.TimedOut || !strings.Contains(tr.Err, "canceled") || !strings.Contains(tr.Err, `"sleeping"`) {
			t.Errorf("task %d: %+v", tr.Task, tr)
		}
		if tr.Pid <= 0 || syscall.Kill(tr.Pid, 0) != syscall.ESRCH {
			t.Errorf("task %d: pid %d outlived the loop", tr.Task, tr.Pid)
		}
	}
}

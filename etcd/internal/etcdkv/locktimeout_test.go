package etcdkv

// locktimeout_test.go: Config.LockTimeout bounds a writable Begin's wait
// for a lock another process holds, when the caller's context has no
// earlier deadline; the error names the holder as a local store's does.
// The negative control ignores the timeout and the bounded wait fails.
//
// May touch: stores of its own names on the shared cluster, the worker
// process it starts.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/psbase/psbase"
)

// beginWithin runs a writable Begin with a context that has no deadline
// and waits at most bound for it to return. ok is false if it did not (its
// context is then cancelled and the call awaited).
func beginWithin(b *Backend, bound time.Duration) (err error, waited time.Duration, ok bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		tx, err := b.Begin(ctx, true, "bounded")
		if err == nil {
			_ = tx.Rollback()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err, time.Since(start), true
	case <-time.After(bound):
		cancel()
		<-done
		return nil, time.Since(start), false
	}
}

func TestLockTimeoutConfig(t *testing.T) {
	c := cluster(t)
	name := storeName(t)
	w := startWorker(t, workerSpec{Mode: "hold", Endpoints: c.Endpoints(), Name: name, TTL: 5 * time.Second})
	w.expect(t, 30*time.Second, "HOLDING")

	// The bound leaves the 1 s timeout plenty of room on a loaded machine
	// (the holder look-up is bounded by holderLookup, a second).
	const timeout, bound = time.Second, 10 * time.Second
	b := open(t, c.Endpoints(), name, func(cfg *Config) { cfg.LockTimeout = timeout })
	err, waited, ok := beginWithin(b, bound)
	if !ok {
		t.Fatalf("a writable Begin with LockTimeout %v still waited after %v", timeout, bound)
	}
	var lt *psbase.LockTimeoutError
	if !errors.Is(err, psbase.ErrLockTimeout) || !errors.As(err, &lt) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin past the lock timeout = %v, want a *LockTimeoutError (deadline exceeded)", err)
	}
	if waited < timeout {
		t.Fatalf("gave up after %v, before the %v timeout", waited, timeout)
	}
	host, _ := os.Hostname()
	if len(lt.Holders) == 0 || lt.Holders[0].PID != w.cmd.Process.Pid || lt.Holders[0].Host != host || lt.Holders[0].Op != "hold" || lt.Holders[0].Waiting {
		t.Fatalf("timeout error names %+v, want pid %d on %s op hold", lt.Holders, w.cmd.Process.Pid, host)
	}
	if lt.Op != "bounded" || lt.Waited < timeout {
		t.Fatalf("timeout error: op %q waited %v", lt.Op, lt.Waited)
	}
	t.Log(err)

	// An earlier deadline of the caller's wins over the lock timeout.
	long := open(t, c.Endpoints(), name, func(cfg *Config) { cfg.LockTimeout = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := long.Begin(ctx, true, "short ctx"); !errors.Is(err, psbase.ErrLockTimeout) {
		t.Fatalf("Begin with a context shorter than the lock timeout = %v", err)
	}

	// Negative control: the timeout ignored, the wait is the context's
	// alone (none here), and the bounded wait fails.
	t.Run("ignored", func(t *testing.T) {
		weak := open(t, c.Endpoints(), name, func(cfg *Config) {
			cfg.LockTimeout = timeout
			cfg.weak.noLockTimeout = true
		})
		err, waited, ok := beginWithin(weak, 4*timeout)
		if ok {
			t.Fatalf("with the lock timeout ignored Begin still returned after %v (%v); the control expects it to wait on", waited, err)
		}
	})
	fmt.Fprintln(w.stdin, "commit")
	w.expect(t, 30*time.Second, "COMMITTED")
}

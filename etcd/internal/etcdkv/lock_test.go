package etcdkv

// lock_test.go: the store lock between real processes — exclusion, the
// holder named in the timeout error, exact counters under contention — and
// the paused holder whose late commit the fence refuses; each with the
// negative control that switches the guarantee off and shows the damage.
//
// May touch: stores of its own names on the shared cluster, worker
// processes it starts (and pauses).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/psbase/psbase/internal/kv"
)

func TestLockExclusionNamesHolder(t *testing.T) {
	c := cluster(t)
	name := storeName(t)
	b := open(t, c.Endpoints(), name, nil)
	w := startWorker(t, workerSpec{Mode: "hold", Endpoints: c.Endpoints(), Name: name, TTL: 5 * time.Second})
	w.expect(t, 30*time.Second, "HOLDING")

	// While the worker holds the lock, this process cannot have it; the
	// timeout error names the worker.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Begin(ctx, true, "wait")
	var lt *psbase.LockTimeoutError
	if !errors.Is(err, psbase.ErrLockTimeout) || !errors.As(err, &lt) {
		t.Fatalf("Begin while another process holds the lock = %v, want ErrLockTimeout", err)
	}
	if waited := time.Since(start); waited > 1500*time.Millisecond+DefaultDialTimeout {
		t.Fatalf("lock timeout after %v", waited)
	}
	host, _ := os.Hostname()
	if len(lt.Holders) == 0 || lt.Holders[0].PID != w.cmd.Process.Pid || lt.Holders[0].Host != host || lt.Holders[0].Op != "hold" {
		t.Fatalf("timeout error names %+v, want pid %d on %s op hold", lt.Holders, w.cmd.Process.Pid, host)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(w.cmd.Process.Pid)) {
		t.Fatalf("error text does not name the holder's pid: %v", err)
	}
	t.Log(err)
	// The waiter's key is gone: the holder is alone again.
	if hs, err := b.Holders(tctx(t)); err != nil || len(hs) != 1 {
		t.Fatalf("holders after the timeout: %+v, %v", hs, err)
	}
	// Released, the lock is had at once.
	fmt.Fprintln(w.stdin, "commit")
	w.expect(t, 30*time.Second, "COMMITTED")
	if err := b.Update(tctx(t), "after", func(tx kv.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, b); got != 1 {
		t.Fatalf("counter = %d, want 1", got)
	}

	// Negative control: without the lock, this process writes while the
	// worker holds it, and the worker's update is lost.
	t.Run("nolock", func(t *testing.T) {
		weak := open(t, c.Endpoints(), name, func(cfg *Config) { cfg.weak.noLock = true })
		w := startWorker(t, workerSpec{Mode: "hold", Endpoints: c.Endpoints(), Name: name, TTL: 5 * time.Second})
		w.expect(t, 30*time.Second, "HOLDING 1")
		if err := weak.Update(tctx(t), "sneak", func(tx kv.Tx) error { return writeCounter(tx, readCounter(tx)+1) }); err != nil {
			t.Fatalf("unlocked write: %v", err)
		}
		fmt.Fprintln(w.stdin, "commit")
		w.expect(t, 30*time.Second, "COMMITTED")
		if got := counter(t, b); got != 2 {
			t.Fatalf("counter = %d after 3 acknowledged increments; the control expects exactly one lost (2)", got)
		}
	})
}

func TestLockCounterTwoProcesses(t *testing.T) {
	c := cluster(t)
	name := storeName(t)
	b := open(t, c.Endpoints(), name, nil)
	const n = 25
	eps := c.Endpoints()
	var ws []*worker
	for i := range 2 {
		// Each worker starts on a different member, as if on another host.
		order := append(append([]string(nil), eps[i:]...), eps[:i]...)
		ws = append(ws, startWorker(t, workerSpec{Mode: "incr", Endpoints: order, Name: name, TTL: 5 * time.Second, N: n}))
	}
	acked := 0
	for _, w := range ws {
		a, u, f := w.outcomes(t, 120*time.Second)
		if u != 0 || f != 0 {
			t.Fatalf("worker: %d unknown, %d failed with a healthy cluster", u, f)
		}
		acked += a
	}
	if got := counter(t, b); got != acked || acked != 2*n {
		t.Fatalf("counter = %d, acknowledged %d, want %d", got, acked, 2*n)
	}
}

// pausedHolder runs the scenario: a worker holds the lock and has read the
// counter; it is SIGSTOPped until its lease expires; a second worker takes
// the lock and increments; the first is resumed and commits its increment.
// It returns the first worker's last line, and the increments acknowledged
// and the counter.
func pausedHolder(t *testing.T, fence bool) (line string, acked, got int) {
	c := cluster(t)
	name := storeName(t)
	b := open(t, c.Endpoints(), name, nil)
	eps := c.Endpoints()
	w1 := startWorker(t, workerSpec{Mode: "hold", Endpoints: eps, Name: name, TTL: 2 * time.Second, NoFence: !fence})
	w1.expect(t, 30*time.Second, "HOLDING 0")
	if err := etcdtest.Pause(w1.cmd.Process); err != nil {
		t.Fatal(err)
	}
	// The second worker's Lock returns only once the first one's lease has
	// expired and its lock key is gone: that is the event waited for.
	w2 := startWorker(t, workerSpec{Mode: "incr", Endpoints: append(eps[1:], eps[0]), Name: name, TTL: 2 * time.Second, N: 1, NoFence: !fence})
	a, u, f := w2.outcomes(t, 60*time.Second)
	if a != 1 || u != 0 || f != 0 {
		t.Fatalf("second worker: %d acked, %d unknown, %d failed", a, u, f)
	}
	fmt.Fprintln(w1.stdin, "commit")
	if err := etcdtest.Resume(w1.cmd.Process); err != nil {
		t.Fatal(err)
	}
	select {
	case line = <-w1.lines:
	case <-time.After(60 * time.Second):
		t.Fatal("the resumed holder said nothing")
	}
	acked = 1
	if strings.HasPrefix(line, "COMMITTED") {
		acked++
	}
	return line, acked, counter(t, b)
}

func TestPausedHolderFenced(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGSTOP")
	}
	line, acked, got := pausedHolder(t, true)
	if !strings.HasPrefix(line, "REFUSED") {
		t.Fatalf("the late commit of a holder whose lease expired: %q, want REFUSED", line)
	}
	t.Log(line)
	if got != acked || got != 1 {
		t.Fatalf("counter = %d, acknowledged %d; want both 1", got, acked)
	}
	// Negative control: without the fencing compare, the late commit goes
	// through and one acknowledged increment is lost.
	t.Run("nofence", func(t *testing.T) {
		line, acked, got := pausedHolder(t, false)
		if !strings.HasPrefix(line, "COMMITTED") || acked != 2 || got != 1 {
			t.Fatalf("unfenced: %q, %d acknowledged, counter %d; the control expects COMMITTED, 2, 1 (an update lost)", line, acked, got)
		}
	})
}

package etcdkv

// fault_test.go: the cluster's own faults — members SIGKILLed (the leader
// included) while two processes increment: nothing acknowledged is lost;
// then every member down: a prompt, clear error within the caller's
// timeout, never a hang.
//
// May touch: a cluster of its own, worker processes it starts.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
)

// tally counts an incr worker's outcomes.
type tally struct{ ack, unknown, failed int }

// until reads w's lines until it has seen n more ACKs (or END).
func (ta *tally) until(t *testing.T, w *worker, n int, d time.Duration) (ended bool) {
	t.Helper()
	deadline := time.After(d)
	for seen := 0; seen < n; {
		select {
		case line, ok := <-w.lines:
			if !ok {
				t.Fatalf("worker %d exited before END", w.cmd.Process.Pid)
			}
			switch word, _, _ := strings.Cut(line, " "); word {
			case "ACK":
				ta.ack++
				seen++
			case "UNKNOWN":
				ta.unknown++
			case "FAIL":
				ta.failed++
				t.Logf("worker %d: %s", w.cmd.Process.Pid, line)
			case "END":
				return true
			default:
				t.Fatalf("worker %d said %q", w.cmd.Process.Pid, line)
			}
		case <-deadline:
			t.Fatalf("worker %d: fewer than %d acknowledged increments in %v", w.cmd.Process.Pid, n, d)
		}
	}
	return false
}

func TestMemberKilledNothingAckedLost(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of its own and two leader kills: not in -short")
	}
	c := etcdtest.Start(t, etcdtest.Options{})
	name := storeName(t)
	b := open(t, c.Endpoints(), name, func(cfg *Config) { cfg.DialTimeout = time.Second })
	eps := c.Endpoints()
	const n = 60
	var ws []*worker
	for i := range 2 {
		order := append(append([]string(nil), eps[i:]...), eps[:i]...)
		ws = append(ws, startWorker(t, workerSpec{Mode: "incr", Endpoints: order, Name: name, TTL: 2 * time.Second, N: n}))
	}
	ta := make([]tally, len(ws))
	ended := make([]bool, len(ws))
	progress := func(k int) {
		for i, w := range ws {
			if !ended[i] {
				ended[i] = ta[i].until(t, w, k, 60*time.Second)
			}
		}
	}
	ctx := tctx(t)
	progress(3)
	// Kill the leader, then (after it is back) the new leader: each time
	// the increments go on on the two others.
	for round := range 2 {
		leader, err := c.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: SIGKILL member %d (the leader)", round, leader)
		if err := c.Kill(leader); err != nil {
			t.Fatal(err)
		}
		progress(5)
		if err := c.Restart(ctx, leader); err != nil {
			t.Fatal(err)
		}
		progress(2)
	}
	acked, unknown := 0, 0
	for i, w := range ws {
		if !ended[i] {
			ta[i].until(t, w, n+1, 120*time.Second)
		}
		acked += ta[i].ack
		unknown += ta[i].unknown
		t.Logf("worker %d: %+v", i, ta[i])
	}
	got := counter(t, b)
	if got < acked || got > acked+unknown {
		t.Fatalf("counter = %d, acknowledged %d, unknown outcome %d: an acknowledged increment was lost or one counted twice", got, acked, unknown)
	}
	if acked < n {
		t.Fatalf("only %d of %d increments acknowledged", acked, 2*n)
	}

	// Every member down: each call fails within its own deadline, naming
	// the endpoints; none hangs.
	for i := range c.Size() {
		if err := c.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		what string
		call func(context.Context) error
	}{
		{"read-only Begin", func(ctx context.Context) error { _, err := b.Begin(ctx, false, ""); return err }},
		{"writable Begin", func(ctx context.Context) error { _, err := b.Begin(ctx, true, "w"); return err }},
		{"Open", func(ctx context.Context) error {
			_, err := Open(ctx, Config{Endpoints: eps, Name: name, DialTimeout: time.Second})
			return err
		}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		err := tc.call(ctx)
		took := time.Since(start)
		cancel()
		var ue *UnreachableError
		if !errors.As(err, &ue) || !errors.Is(err, psbase.ErrUnavailable) || !strings.Contains(err.Error(), eps[0]) {
			t.Errorf("%s with every member down: %v, want an *UnreachableError naming the endpoints", tc.what, err)
		}
		if took > 3*time.Second {
			t.Errorf("%s with every member down took %v; its deadline was 2 s", tc.what, took)
		}
		t.Logf("%s: %v after %v", tc.what, err, took.Round(time.Millisecond))
	}
}

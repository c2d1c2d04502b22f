package etcd

// metrics_test.go: a store on etcd reports its writers' lock wait — in the
// observer's Event.Wait and in Metrics().LockWait — as a local store does:
// a writer that waited behind another handle's transaction (its own etcd
// session) reports at least the time it was seen waiting. The control drops
// the remote wait and the check catches it.
//
// May touch: a one-member cluster of its own.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/psbase/psbase/internal/backend"
)

// waitedBehind holds the lock with one handle while another inserts, and
// returns the insert's Event.Wait, the lower bound seen, and the waiter's
// LockWait histogram count.
func waitedBehind(t *testing.T, cl *etcdtest.Cluster, cli *clientv3.Client, name string) (got, atLeast time.Duration, count uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw := "etcd://" + strings.Join(hostsOf(cl.Endpoints()), ",") + "/" + name
	a, err := psbase.Open(ctx, raw, psbase.WithCreate(schemaX))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var mu sync.Mutex
	var ev *psbase.Event
	b, err := psbase.Open(ctx, raw, psbase.WithObserver(func(_ context.Context, e psbase.Event) {
		if e.Op == "insert" {
			mu.Lock()
			ev = &e
			mu.Unlock()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tx, err := a.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { _, err := b.Insert(ctx, psbase.Values{"x": 1}); done <- err }()
	// The event waited for: the second lock key (b waiting behind a).
	for {
		resp, err := cli.Get(ctx, name+"/lock/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) >= 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the second writer never waited")
		}
	}
	atLeast = time.Since(start)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if ev == nil {
		t.Fatal("no insert event")
	}
	return ev.Wait, atLeast, b.Metrics().LockWait.Count
}

func TestRemoteLockWaitMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	cl := etcdtest.Start(t, etcdtest.Options{Members: 1})
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	got, atLeast, n := waitedBehind(t, cl, cli, "m1")
	if got < atLeast || n == 0 {
		t.Fatalf("insert behind another writer: Event.Wait %v, seen waiting for %v; LockWait count %d", got, atLeast, n)
	}
	t.Logf("Event.Wait %v (seen waiting %v), LockWait count %d", got, atLeast, n)
	t.Run("nowait", func(t *testing.T) {
		backend.WeakNoRemoteWait.Store(true)
		defer backend.WeakNoRemoteWait.Store(false)
		got, atLeast, n := waitedBehind(t, cl, cli, "m2")
		if got >= atLeast && n > 0 {
			t.Fatalf("with the remote wait dropped the check passed (%v ≥ %v, %d)", got, atLeast, n)
		}
	})
}

package etcdkv

// cleanup_test.go: Cleanup removes exactly this store's dead keys (data and
// sequence keys of a bucket without its marker, a holder record without its
// lock key), keeps every live key and every key of other stores (one whose
// name this one's is a prefix of included), and never compacts the
// cluster. The control takes live keys for dead and the check catches it.
//
// May touch: stores of its own names on the shared cluster.

import (
	"context"
	"slices"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psbase/psbase/internal/kv"
)

// cleanupScenario plants dead keys beside a live bucket and a neighbour
// store, runs Cleanup on a backend tweaked by tweak, and returns the keys
// left under both prefixes and the removal count.
func cleanupScenario(t *testing.T, tweak func(*Config)) (name string, left []string, removed int) {
	t.Helper()
	c := cluster(t)
	name = storeName(t)
	b := open(t, c.Endpoints(), name, tweak)
	ctx := tctx(t)
	if err := b.Update(ctx, "setup", func(tx kv.Tx) error { return writeCounter(tx, 7) }); err != nil {
		t.Fatal(err)
	}
	cli := b.Client()
	first, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	dead := []string{name + "/d/deadbeef/:k", name + "/s/deadbeef/", name + "/holder/123abc"}
	foreign := []string{name + "x/d/deadbeef/:k", name + "x/holder/1"}
	for _, k := range append(slices.Clone(dead), foreign...) {
		if _, err := cli.Put(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), name+"x/", clientv3.WithPrefix()) })
	res, err := b.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.After > res.Before || res.Keys == 0 {
		t.Fatalf("cleanup result %+v", res)
	}
	for _, p := range []string{name + "/", name + "x/"} {
		resp, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			left = append(left, string(kv.Key))
		}
	}
	// Never compacted: the revision from before is still readable.
	if _, err := cli.Get(ctx, "any", clientv3.WithRev(first.Header.Revision)); err != nil {
		t.Fatalf("a read at a revision from before Cleanup: %v (was the cluster compacted?)", err)
	}
	t.Logf("cleanup: %+v", res)
	return name, left, res.Removed
}

func TestCleanupDeadKeysOnly(t *testing.T) {
	// What must be left: the counter bucket's marker and key, and the
	// neighbour store's keys, untouched.
	check := func(name string, left []string, removed int) bool {
		want := []string{name + "/b/63/", name + "/d/63/:n", name + "x/d/deadbeef/:k", name + "x/holder/1"}
		slices.Sort(left)
		return removed == 3 && slices.Equal(left, want)
	}
	name, left, removed := cleanupScenario(t, nil)
	if !check(name, left, removed) {
		t.Fatalf("left %q, removed %d", left, removed)
	}
	t.Run("cleanupAll", func(t *testing.T) {
		name, left, removed := cleanupScenario(t, func(c *Config) { c.weak.cleanupAll = true })
		if check(name, left, removed) {
			t.Fatalf("cleanup that takes live keys for dead passed the check (left %q)", left)
		}
	})
}

package etcd

// index_test.go: CreateIndex on an etcd store larger than one commit — the
// chunked build succeeds where one transaction is ErrTxTooLarge; a builder
// killed half-way leaves nothing visible, Check clean (and Check does see
// the leftover once its marker is gone), and a retry succeeds; a duplicate
// found before writing is ErrDuplicate with nothing left.
//
// May touch: the stores the tests name on the shared cluster; a builder
// process (killed).

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/psbase/psbase"
)

var indexFields = []psbase.Field{{Name: "name", Type: psbase.String}, {Name: "n", Type: psbase.Int}, {Name: "dup", Type: psbase.Int}}

const bigStore = 300 // records: far above max_txn_ops=16

// fillBig creates a store of bigStore records at url (loaded in commits of
// 10 under the default limits) and returns the URL with max_txn_ops=16.
func fillBig(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	s, err := psbase.Create(ctx, url, indexFields)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < bigStore; i += 10 {
		err := s.Txn(ctx, func(tx *psbase.Tx) error {
			for j := i; j < i+10; j++ {
				if _, err := tx.Insert(psbase.Values{"name": fmt.Sprintf("r%04d", j), "n": j, "dup": j % (bigStore - 1)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return url + "&max_txn_ops=16"
}

func checkClean(t *testing.T, ctx context.Context, s *psbase.Store, indexes int) {
	t.Helper()
	rep, err := s.Check(ctx)
	if err != nil || !rep.OK() || rep.Indexes != indexes || rep.Records != bigStore {
		t.Fatalf("check: %+v %v", rep, err)
	}
}

func TestCreateIndexOnEtcdChunked(t *testing.T) {
	cl := sharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := fillBig(t, ctx, storeURL(t, "etcd", cl, "ttl=2s"))
	s, err := psbase.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The control: the same build as one transaction is above the limit.
	err = s.Txn(ctx, func(tx *psbase.Tx) error { return tx.CreateIndex("n", psbase.Unique()) })
	if !errors.Is(err, psbase.ErrTxTooLarge) {
		t.Fatalf("one-transaction build of %d entries at max_txn_ops=16: %v", bigStore, err)
	}
	var calls, last int
	if err := s.CreateIndex(ctx, "n", psbase.Unique(), psbase.IndexProgress(func(done, total int) { calls, last = calls+1, done })); err != nil {
		t.Fatal(err)
	}
	if calls < bigStore/16 || last != bigStore {
		t.Fatalf("progress: %d calls, last %d", calls, last)
	}
	if r, err := s.GetBy(ctx, "n", 123); err != nil || r.Values["name"] != "r0123" {
		t.Fatalf("GetBy on the built index: %+v %v", r, err)
	}
	checkClean(t, ctx, s, 1)
	// A unique violation is found before anything is written.
	if err := s.CreateIndex(ctx, "dup", psbase.Unique()); !errors.Is(err, psbase.ErrDuplicate) {
		t.Fatalf("unique build over a duplicate: %v", err)
	}
	checkClean(t, ctx, s, 1)
	if err := s.CreateIndex(ctx, "dup"); err != nil { // nothing left in the way
		t.Fatal(err)
	}
	checkClean(t, ctx, s, 2)
}

// A builder process killed after its first piece: the index is not there
// (GetBy refuses the field, Check is clean, its schema has no index), yet
// the piece is (deleting the marker makes Check report the bucket: the kill
// did land mid-build and Check is not blind to strays); a retry, after the
// dead builder's lease expired, removes the leftover and builds.
func TestCreateIndexOnEtcdBuilderKilled(t *testing.T) {
	cl := sharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	raw := storeURL(t, "etcd", cl, "ttl=2s")
	url := fillBig(t, ctx, raw)
	b := spawn(t, "build", url, envField+"=name", envBlock+"=1")
	if l := b.line(t, time.Minute); !strings.HasPrefix(l, "PROGRESS ") || strings.HasPrefix(l, fmt.Sprintf("PROGRESS %d ", bigStore)) {
		t.Fatalf("builder: %q", l)
	}
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = b.cmd.Wait()

	s, err := psbase.Open(ctx, url, psbase.WithLockTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetBy(ctx, "name", "r0001"); !errors.Is(err, psbase.ErrSchema) {
		t.Fatalf("GetBy on the half-built index: %v", err)
	}
	checkClean(t, ctx, s, 0)

	// The control: without the marker the leftover is a stray bucket.
	name := raw[strings.LastIndex(raw, "/")+1 : strings.Index(raw, "?")]
	marker := name + "/d/" + hex.EncodeToString([]byte("psbase")) + "/:index_build"
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	got, err := cli.Get(ctx, marker)
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "name" {
		t.Fatalf("the build marker %q: %+v %v", marker, got, err)
	}
	if _, err := cli.Delete(ctx, marker); err != nil {
		t.Fatal(err)
	}
	if rep, _ := s.Check(ctx); len(rep.Problems) != 1 || rep.Problems[0].Index != "name" || !strings.Contains(rep.Problems[0].What, "without an index") {
		t.Fatalf("check with the leftover unmarked: %+v", rep)
	}
	if _, err := cli.Put(ctx, marker, "name"); err != nil {
		t.Fatal(err)
	}

	if err := s.CreateIndex(ctx, "name", psbase.Unique()); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if r, err := s.GetBy(ctx, "name", "r0299"); err != nil || r.Values["n"] != int64(299) {
		t.Fatalf("GetBy after the retry: %+v %v", r, err)
	}
	checkClean(t, ctx, s, 1)
	if got, err := cli.Get(ctx, marker); err != nil || len(got.Kvs) != 0 {
		t.Fatalf("the marker after the build: %+v %v", got, err)
	}
}

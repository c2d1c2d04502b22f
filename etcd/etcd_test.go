package etcd

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
)

func TestMain(m *testing.M) {
	etcdtest.Main()
	if role := os.Getenv(envRole); role != "" {
		os.Exit(runRole(role)) // a worker process of the tests (roles_test.go)
	}
	code := m.Run()
	closeShared()
	if stormCluster != nil {
		stormCluster.Close()
	}
	os.Exit(code)
}

func TestParseURL(t *testing.T) {
	c, display, err := parseURL("etcd://a:1,b:2/jobs?ttl=3s&max_txn_ops=64")
	if err != nil || display != "etcd://a:1,b:2/jobs" || len(c.Endpoints) != 2 || c.Name != "jobs" || c.SessionTTL.Seconds() != 3 || c.MaxTxnOps != 64 {
		t.Fatalf("%+v %q %v", c, display, err)
	}
	for _, bad := range []string{"etcd://a:1", "etcd://a:1/", "etcd://,/x", "etcd://a/x?ttl=-1s", "etcd://a/x?color=red", "etcd://u:hunter2@a/x"} {
		if _, _, err := parseURL(bad); !errors.Is(err, psbase.ErrOption) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// The same psbase API on a 3-member cluster: one string changes.
func TestStoreOnEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	cl := etcdtest.Start(t, etcdtest.Options{})
	ctx := context.Background()
	url := "etcd://" + strings.Join(hostsOf(cl.Endpoints()), ",") + "/jobs"
	s, err := psbase.Create(ctx, url, []psbase.Field{{Name: "name", Type: psbase.String, Unique: true}, {Name: "n", Type: psbase.Int}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, err := s.Insert(ctx, psbase.Values{"name": "counter", "n": 0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctx, psbase.Values{"name": "counter"}); !errors.Is(err, psbase.ErrDuplicate) {
		t.Fatalf("unique index on etcd: %v", err)
	}
	other, err := psbase.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := s
			if g%2 == 1 {
				h = other
			}
			for range 5 {
				err := h.Txn(ctx, func(tx *psbase.Tx) error {
					r, err := tx.Get(id)
					if err != nil {
						return err
					}
					_, err = tx.UpdateByID(id, psbase.Values{"n": r.Values["n"].(int64) + 1})
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if r, err := s.Get(ctx, id); err != nil || r.Values["n"] != int64(20) {
		t.Fatalf("counter: %+v %v", r, err)
	}
	if v, err := s.Add(ctx, id, "n", -3); err != nil || v != 17 {
		t.Fatalf("Add on etcd: %d %v, want 17", v, err)
	}
	if _, err := s.Add(ctx, id, "name", 1); !errors.Is(err, psbase.ErrSchema) {
		t.Fatalf("Add to a string field on etcd: %v, want ErrSchema", err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Records != 1 || st.NextID != id+1 || len(st.Schema) != 2 || strings.Contains(st.Path, "@") {
		t.Fatalf("Stats on etcd: %+v %v", st, err)
	}
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Fatalf("check: %+v %v", rep, err)
	}
	if res, err := s.Cleanup(ctx); err != nil || res.Records != 1 || res.Before == 0 || res.After != res.Before {
		t.Fatalf("cleanup on etcd (nothing dead): %+v %v", res, err)
	}
	if _, err := psbase.Create(ctx, url, []psbase.Field{{Name: "x", Type: psbase.Int}}); !errors.Is(err, psbase.ErrExists) {
		t.Fatalf("second create: %v", err)
	}
}

// hostsOf strips the scheme of client URLs.
func hostsOf(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	}
	return out
}

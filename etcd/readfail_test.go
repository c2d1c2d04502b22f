package etcd

// readfail_test.go: a read that fails inside View (here: the snapshot's
// revision compacted away under it) surfaces as that failure, not as what
// the function made of the empty read (ErrNotFound). The control hides it.
//
// May touch: a one-member cluster of its own (compacted by the test).

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/psbase/psbase/internal/backend"
)

// viewAfterCompaction runs a View that compacts the cluster past its own
// revision, then reads a record that exists, and returns View's error.
func viewAfterCompaction(t *testing.T, s *psbase.Store, cli *clientv3.Client, id uint64) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Move the cluster past the View's snapshot, then compact up to now.
	if _, err := s.Insert(ctx, psbase.Values{"x": 0}); err != nil {
		t.Fatal(err)
	}
	return s.View(ctx, func(tx *psbase.Tx) error {
		if _, err := s.Insert(ctx, psbase.Values{"x": 0}); err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Get(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Get(id)
		return err
	})
}

func TestViewReadFailureSurfaces(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	cl := etcdtest.Start(t, etcdtest.Options{Members: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s, err := psbase.Create(ctx, "etcd://"+strings.Join(hostsOf(cl.Endpoints()), ",")+"/rf", schemaX)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, err := s.Insert(ctx, psbase.Values{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	err = viewAfterCompaction(t, s, cli, id)
	if err == nil || errors.Is(err, psbase.ErrNotFound) || !errors.Is(err, psbase.ErrUnavailable) || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("View whose read failed = %v, want the read's failure (compacted), not ErrNotFound", err)
	}
	t.Log(err)
	t.Run("hidden", func(t *testing.T) {
		backend.WeakHideReadFailure.Store(true)
		defer backend.WeakHideReadFailure.Store(false)
		if err := viewAfterCompaction(t, s, cli, id); !errors.Is(err, psbase.ErrNotFound) {
			t.Fatalf("with the read failure hidden View = %v; the control expects ErrNotFound (the lie)", err)
		}
	})
}

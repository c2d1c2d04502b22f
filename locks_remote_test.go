package psbase

// locks_remote_test.go: LockHoldersContext on store URLs, against a fake
// "holdtest" backend that lists fixed holders (the etcd backend's own list
// is tested against a real cluster in etcd/ and cmd/psbase).
//
// May touch: a temporary directory.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/kv"
)

// holdSince is the start time the holdtest holders report.
var holdSince = time.Date(2026, 12, 3, 1, 2, 3, 0, time.UTC)

func init() {
	backend.Register("holdtest", func(ctx context.Context, cfg backend.Config) (backend.Backend, string, error) {
		rest := strings.TrimPrefix(cfg.URL, "holdtest://")
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = rest[at+1:]
		}
		if strings.HasSuffix(rest, "/broken") {
			return &holdBackend{err: errors.New("holdtest: the list failed")}, "holdtest://" + rest, nil
		}
		return &holdBackend{hs: []backend.Holder{
			{PID: 41, Host: "alpha", Op: "insert", Since: holdSince, Lease: "6c1e"},
			{PID: 42, Host: "beta", Op: "update", Lease: "6c1f"},
		}}, "holdtest://" + rest, nil
	})
}

// holdBackend is a backend.HolderLister with a fixed answer; it has no
// transactions.
type holdBackend struct {
	hs  []backend.Holder
	err error
}

func (b *holdBackend) Begin(context.Context, bool, string) (kv.Tx, error) {
	return nil, errorf(ErrUnsupported, "holdtest has no transactions")
}
func (b *holdBackend) Close() error { return nil }
func (b *holdBackend) Holders(ctx context.Context) ([]backend.Holder, error) {
	return b.hs, b.err
}

// checkHoldtest reports how holders differ from what holdtest lists.
func checkHoldtest(hs []LockHolder) error {
	if len(hs) != 2 {
		return fmt.Errorf("%d holders, want 2: %+v", len(hs), hs)
	}
	h, w := hs[0], hs[1]
	if h.PID != 41 || h.Host != "alpha" || h.Op != "insert" || !h.Since.Equal(holdSince) || h.Lease != "6c1e" || !h.Exclusive || h.Waiting {
		return fmt.Errorf("holder %+v", h)
	}
	if w.PID != 42 || w.Host != "beta" || !w.Waiting || w.Lease != "6c1f" {
		return fmt.Errorf("waiter %+v", w)
	}
	if s := h.String(); !strings.Contains(s, "on alpha") || !strings.Contains(s, "lease 6c1e") {
		return fmt.Errorf("String() = %q names neither host nor lease", s)
	}
	return nil
}

func TestLockHoldersContextURL(t *testing.T) {
	ctx := context.Background()
	hs, err := LockHoldersContext(ctx, "holdtest://u:hunter2@h1,h2/jobs?x=1")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkHoldtest(hs); err != nil {
		t.Fatal(err)
	}
	// Negative control: a backend that lists nobody fails the check.
	if err := checkHoldtest(nil); err == nil {
		t.Fatal("checkHoldtest accepted an empty list")
	}

	// A backend's failure names the store, never its credentials.
	_, err = LockHoldersContext(ctx, "holdtest://u:hunter2@h1/broken")
	if err == nil || !strings.Contains(err.Error(), "holdtest://h1/broken") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("failed list: %v", err)
	}
	// A backend that cannot list: ErrUnsupported, naming the store.
	_, err = LockHoldersContext(ctx, "memtest://u:hunter2@locks-nolister")
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "memtest://locks-nolister") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("backend without a list: %v", err)
	}
	// No backend for the scheme: ErrUnsupported.
	if _, err := LockHoldersContext(ctx, "nosuch://h/x"); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "nosuch://h/x") {
		t.Fatalf("unknown scheme: %v", err)
	}
}

func TestLockHoldersContextLocal(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	// No store there: no holders, as LockHolders says.
	if hs, err := LockHoldersContext(context.Background(), db); err != nil || hs != nil {
		t.Fatalf("no store: %v %v", hs, err)
	}
	s, err := Create(context.Background(), db, []Field{{Name: "n", Type: Int}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tx, err := s.Begin(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	hs, err := LockHoldersContext(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := LockHolders(db)
	if len(hs) != len(want) {
		t.Fatalf("LockHoldersContext %+v, LockHolders %+v", hs, want)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := LockHoldersContext(cctx, db); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), db) {
		t.Fatalf("cancelled context: %v", err)
	}
}

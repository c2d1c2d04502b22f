package psbase

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var events []Event
	type ctxKey struct{}
	s, db := newTestStore(t, WithObserver(func(ctx context.Context, e Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.Op != "create" && e.Op != "stats" && ctx.Value(ctxKey{}) != "trace" {
			t.Errorf("observer of %s got another context", e.Op)
		}
		events = append(events, e)
	}))
	defer s.Close()
	tctx := context.WithValue(ctx, ctxKey{}, "trace")
	var ids []uint64
	for i := range 3 {
		id, err := s.Insert(tctx, Values{"name": "m", "n": i})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := s.Get(tctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(tctx, 999); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if recs, err := s.Select(tctx, Query{}); err != nil || len(recs) != 3 {
		t.Fatal(len(recs), err)
	}

	// A lock timeout: another handle holds the writer lock.
	other, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hold, err := other.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(tctx, 50*time.Millisecond)
	_, err = s.UpdateByID(short, ids[1], Values{"n": 9})
	cancel()
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("update under a held lock: %v", err)
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}

	m := s.Metrics()
	if got := m.Ops["insert"]; got.Count != 3 || got.Errors != 0 || got.Duration <= 0 {
		t.Errorf("insert ops: %+v", got)
	}
	if got := m.Ops["get"]; got.Count != 2 || got.Errors != 1 {
		t.Errorf("get ops: %+v", got)
	}
	if got := m.Ops["update"]; got.Count != 1 || got.Errors != 1 {
		t.Errorf("update ops: %+v (all: %+v)", got, m.Ops)
	}
	if m.Errors["ErrNotFound"] != 1 || m.Errors["ErrLockTimeout"] != 1 || len(m.Errors) != 2 {
		t.Errorf("errors: %v", m.Errors)
	}
	if m.LockTimeouts != 1 {
		t.Errorf("lock timeouts: %d", m.LockTimeouts)
	}
	if m.RecordsWritten != 3 || m.BytesWritten == 0 || m.RecordsRead < 4 || m.BytesRead == 0 {
		t.Errorf("records: wrote %d (%d B), read %d (%d B)", m.RecordsWritten, m.BytesWritten, m.RecordsRead, m.BytesRead)
	}
	if m.LockWait.Count < 4 {
		t.Errorf("lock waits: %+v", m.LockWait)
	}
	var sum uint64
	for _, c := range m.LockWait.Counts {
		sum += c
	}
	if sum != m.LockWait.Count || len(m.LockWait.Counts) != len(m.LockWait.Bounds)+1 {
		t.Errorf("histogram counts %v do not add up to %d", m.LockWait.Counts, m.LockWait.Count)
	}
	// A read that times out waits for the lock itself.
	hold, err = other.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel = context.WithTimeout(tctx, 50*time.Millisecond)
	_, err = s.Get(short, ids[1])
	cancel()
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("get under a held lock: %v", err)
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	if m = s.Metrics(); m.LockWait.Quantile(1) < 0.01 || m.LockTimeouts != 2 {
		t.Errorf("lock waits: %+v, timeouts %d (a timed-out wait lasted 50 ms)", m.LockWait, m.LockTimeouts)
	}
	if groupCommitSupported {
		st, _ := s.Stats(ctx)
		if m.BatchSize.Count != st.CombinedBatches || uint64(m.BatchSize.Sum) != st.CombinedOps || m.BatchSize.Count == 0 {
			t.Errorf("batch sizes %+v, Stats says %d batches of %d ops", m.BatchSize, st.CombinedBatches, st.CombinedOps)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	var sawTimeout bool
	for _, e := range events {
		if e.Op == "update" {
			sawTimeout = errors.Is(e.Err, ErrLockTimeout) && e.Duration >= 50*time.Millisecond
		}
	}
	if !sawTimeout || len(events) < 7 {
		t.Errorf("observer saw %d events, timeout seen: %v: %+v", len(events), sawTimeout, events)
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := newHistogram([]float64{1, 2, 4})
	if h.snapshot().Quantile(0.5) != 0 {
		t.Error("empty histogram")
	}
	for _, v := range []float64{0.5, 1, 1.5, 3, 100} {
		h.observe(v)
	}
	hs := h.snapshot()
	if hs.Count != 5 || hs.Sum != 106 || hs.Counts[0] != 2 || hs.Counts[1] != 1 || hs.Counts[2] != 1 || hs.Counts[3] != 1 {
		t.Fatalf("%+v", hs)
	}
	if q := hs.Quantile(0.4); q != 1 {
		t.Errorf("p40 = %v", q)
	}
	if q := hs.Quantile(0.8); q != 4 {
		t.Errorf("p80 = %v", q)
	}
	if q := hs.Quantile(1); q < 1e300 {
		t.Errorf("p100 = %v", q)
	}
}

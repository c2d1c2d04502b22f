package etcd

// storm_test.go: the storm suite on etcd — psbase stores on a real 3-member
// etcdtest cluster stormed by real OS processes (package storm re-executes
// this test binary), each worker's URL listing a different member first, as
// if on different hosts. Counter, versioned update, seed-003 upsert and
// porcupine-checked registers, each with its negative control in the same
// run (the broken variant must FAIL the check). The fault storms are in
// storm_faults_test.go; the paused holder (which needs etcdkv's unfenced
// knob) is in internal/etcdkv/storm_paused_test.go.
//
// Run them with: go test -count=1 -run Storm -v ./etcd   (skipped by -short)
//
// May touch: the shared test cluster (started once per test binary), stores
// of their own names on it, the storm's child processes.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/psbase/psbase/storm"
)

var (
	stormOnce    sync.Once
	stormCluster *etcdtest.Cluster
	stormErr     error
)

// stormSkip skips a storm under -short and where process storms do not run.
func stormSkip(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("process storms on a 3-member etcd cluster: not in -short")
	}
	if runtime.GOOS == "windows" {
		t.Skip("process storms need Linux or macOS")
	}
}

// stormShared returns the cluster the storms share, started on first use
// (in the parent only: a storm child gets its URL from its arguments) and
// closed by TestMain.
func stormShared(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	if storm.IsChild() {
		t.Fatal("stormShared called in a storm child")
	}
	stormOnce.Do(func() { stormCluster, stormErr = etcdtest.StartCluster(etcdtest.Options{}) })
	if stormErr != nil {
		t.Fatalf("etcdtest: %v", stormErr)
	}
	return stormCluster
}

// stormURLs returns one store URL per member of c for the store name, each
// listing a different member's endpoint first (worker i uses urls[i%3]).
func stormURLs(c *etcdtest.Cluster, name, query string) []string {
	hosts := hostsOf(c.Endpoints())
	var urls []string
	for i := range hosts {
		order := append(slices.Clone(hosts[i:]), hosts[:i]...)
		urls = append(urls, "etcd://"+strings.Join(order, ",")+"/"+name+query)
	}
	return urls
}

// stormName is a store name unique to the test and the moment.
func stormName(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// stormCreate creates a store for a storm on the shared cluster (in the
// parent only), with rows inserted as IDs 1..len(rows), and returns its
// per-member URLs.
func stormCreate(t *testing.T, query string, fields []psbase.Field, rows ...psbase.Values) []string {
	t.Helper()
	urls := stormURLs(stormShared(t), stormName(t), query)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := psbase.Create(ctx, urls[0], fields)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, r := range rows {
		id, err := s.Insert(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if id != uint64(i+1) {
			t.Fatalf("row %d got ID %d; the storms assume IDs 1..n", i, id)
		}
	}
	return urls
}

// stormArgs gives task i the URL that lists member i%3 first.
func stormArgs(urls []string) func(int) []string {
	return func(task int) []string { return []string{urls[task%len(urls)]} }
}

// opCtx bounds one operation of a worker or a check of the parent.
func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// workerStore opens the storm's store in a child, by its own URL.
func workerStore(w *storm.Worker) (*psbase.Store, error) {
	ctx, cancel := opCtx()
	defer cancel()
	return psbase.Open(ctx, w.Args[0])
}

// parentStore opens a storm's store in the parent after the storm.
func parentStore(t *testing.T, url string) *psbase.Store {
	t.Helper()
	ctx, cancel := opCtx()
	defer cancel()
	s, err := psbase.Open(ctx, url)
	if err != nil {
		t.Fatalf("open the store after the storm: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// checkStore runs psbase's integrity check on the store.
func checkStore(t *testing.T, s *psbase.Store) {
	t.Helper()
	ctx, cancel := opCtx()
	defer cancel()
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check after the storm: %v (problems: %v)", err, rep.Problems)
	}
}

// intField reads an Int field of record id.
func intField(t *testing.T, s *psbase.Store, id uint64, field string) int64 {
	t.Helper()
	ctx, cancel := opCtx()
	defer cancel()
	r, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("read record %d: %v", id, err)
	}
	n, _ := r.Values[field].(int64)
	return n
}

// onlyLoop returns the storm's single loop.
func onlyLoop(t *testing.T, res *storm.Result) *storm.LoopResult {
	t.Helper()
	if len(res.Loops) != 1 {
		t.Fatalf("storm ran %d loops, want 1", len(res.Loops))
	}
	return res.Loops[0]
}

// anomalies returns a checker's anomalies (none for nil).
func anomalies(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *storm.CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("not a *storm.CheckError: %v", err)
	}
	return ce.Anomalies
}

// countPrefix counts the lines starting with p.
func countPrefix(lines []string, p string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, p) {
			n++
		}
	}
	return n
}

// logLoop logs a loop's numbers.
func logLoop(t *testing.T, what string, l *storm.LoopResult) {
	t.Helper()
	t.Logf("%s: %d tasks, skew %v, max in flight %d, %d ops (%d ok, %d failed, %d unknown), wall %v",
		what, len(l.Tasks), l.Skew, l.MaxInFlight, len(l.History), l.History.Count(storm.StatusOK),
		l.History.Count(storm.StatusFail), l.History.Count(storm.StatusInfo), l.Wall.Round(time.Millisecond))
}

var counterFields = []psbase.Field{{Name: "n", Type: psbase.Int}}

const counterID = 1

// incrementTxn is the correct read-modify-write: one Txn, so one fenced
// etcd commit under the store lock.
func incrementTxn(w *storm.Worker, s *psbase.Store) error {
	ctx, cancel := opCtx()
	defer cancel()
	return s.Txn(ctx, func(tx *psbase.Tx) error {
		w.Phase("in-tx")
		r, err := tx.Get(counterID)
		if err != nil {
			return err
		}
		_, err = tx.UpdateByID(counterID, psbase.Values{"n": r.Values["n"].(int64) + 1})
		return err
	})
}

// incrementTorn is the lost update: read in one transaction, write the new
// value blindly in a second one.
func incrementTorn(w *storm.Worker, s *psbase.Store) error {
	ctx, cancel := opCtx()
	defer cancel()
	r, err := s.Get(ctx, counterID)
	if err != nil {
		return err
	}
	return s.Txn(ctx, func(tx *psbase.Tx) error {
		_, err := tx.UpdateByID(counterID, psbase.Values{"n": r.Values["n"].(int64) + 1})
		return err
	})
}

// TestStormEtcdCounter: 50 processes × 20 increments in Txn on etcd =
// exactly 1000; the torn variant (two transactions) loses updates and
// CheckCounter says so.
func TestStormEtcdCounter(t *testing.T) {
	stormSkip(t)
	const procs = 50
	run := func(t *testing.T, k int, inc func(*storm.Worker, *psbase.Store) error) (*storm.LoopResult, int64, error) {
		var urls []string
		if !storm.IsChild() {
			urls = stormCreate(t, "", counterFields, psbase.Values{"n": 0})
		}
		res := storm.Run(t, storm.Config{Procs: procs, Timeout: 3 * time.Minute, ReadyTimeout: time.Minute, Args: stormArgs(urls)}, func(w *storm.Worker) error {
			s, err := workerStore(w)
			if err != nil {
				return err
			}
			defer s.Close()
			for range k {
				id := w.Invoke("counter", 1)
				err := inc(w, s)
				w.Phase("after-commit")
				if err != nil {
					return err // outcome left unknown
				}
				w.Ok(id, nil)
			}
			return nil
		})
		l := onlyLoop(t, res)
		s := parentStore(t, urls[0])
		checkStore(t, s)
		final := intField(t, s, counterID, "n")
		return l, final, storm.CheckCounter(l.History.Key("counter"), final)
	}
	t.Run("txn", func(t *testing.T) {
		const k = 20
		l, final, err := run(t, k, incrementTxn)
		logLoop(t, "counter/txn", l)
		t.Logf("counter/txn: final %d of %d increments", final, procs*k)
		if err != nil {
			t.Error(err)
		}
		if final != procs*k {
			t.Errorf("final %d, want %d", final, procs*k)
		}
	})
	t.Run("negative_torn", func(t *testing.T) {
		// Two increments each are enough: on etcd the gap between the two
		// transactions is a lock hand-off, and nearly every update is lost.
		const k = 2
		l, final, err := run(t, k, incrementTorn)
		logLoop(t, "counter/torn", l)
		t.Logf("counter/torn (negative control): final %d of %d acknowledged increments: %d lost", final, procs*k, procs*k-final)
		if err == nil || final >= procs*k {
			t.Fatalf("negative control: Get then UpdateByID in two transactions lost no update (final %d of %d): the storm cannot detect lost updates", final, procs*k)
		}
		if n := countPrefix(anomalies(t, err), "lost update"); n != 1 {
			t.Errorf("negative control: CheckCounter did not report the lost update: %v", err)
		}
	})
}

// TestStormEtcdVersionedUpdate: Get then Update(rec) from separate calls,
// retried on ErrConflict, loses nothing on etcd: every lost race is an
// ErrConflict. Control: UpdateByID after a separate Get (versions ignored)
// loses updates silently.
func TestStormEtcdVersionedUpdate(t *testing.T) {
	stormSkip(t)
	// Fewer than the counter: every conflicting attempt is a locked etcd
	// round trip, and 50 optimists on one record mostly conflict.
	const procs, k = 12, 5
	run := func(t *testing.T, versioned bool) (storm.History, int64) {
		var urls []string
		if !storm.IsChild() {
			urls = stormCreate(t, "", counterFields, psbase.Values{"n": 0})
		}
		res := storm.Run(t, storm.Config{Procs: procs, Timeout: 3 * time.Minute, Args: stormArgs(urls)}, func(w *storm.Worker) error {
			s, err := workerStore(w)
			if err != nil {
				return err
			}
			defer s.Close()
			for range k {
				for attempt := 0; ; attempt++ {
					ctx, cancel := opCtx()
					rec, err := s.Get(ctx, counterID)
					if err != nil {
						cancel()
						return err
					}
					// Each attempt is an operation: a conflict is recorded as
					// failed, so CheckCounter catches one that did land.
					id := w.Invoke("counter", 1)
					next := psbase.Values{"n": rec.Values["n"].(int64) + 1}
					if versioned {
						_, err = s.Update(ctx, rec, next)
					} else {
						_, err = s.UpdateByID(ctx, counterID, next)
					}
					cancel()
					if errors.Is(err, psbase.ErrConflict) {
						w.Fail(id, err)
						// Jittered backoff keeps the optimists from livelocking
						// (pacing, not synchronisation).
						time.Sleep(time.Duration(w.Rand.IntN(2000<<min(attempt, 5))) * time.Microsecond)
						continue
					}
					if err != nil {
						return err
					}
					w.Ok(id, nil)
					break
				}
			}
			return nil
		})
		l := onlyLoop(t, res)
		logLoop(t, fmt.Sprintf("versioned=%v", versioned), l)
		s := parentStore(t, urls[0])
		checkStore(t, s)
		return l.History.Key("counter"), intField(t, s, counterID, "n")
	}
	t.Run("versioned", func(t *testing.T) {
		h, final := run(t, true)
		conflicts := h.Count(storm.StatusFail)
		t.Logf("versioned: final %d of %d increments, %d attempts, %d ErrConflict (each a lost race caught, none silent)", final, procs*k, len(h), conflicts)
		if err := storm.CheckCounter(h, final); err != nil {
			t.Error(err)
		}
		if final != procs*k || h.Count(storm.StatusOK) != procs*k {
			t.Errorf("final %d, %d acknowledged; want %d", final, h.Count(storm.StatusOK), procs*k)
		}
		if conflicts == 0 {
			t.Errorf("no ErrConflict at all: the storm did not race the updates")
		}
	})
	t.Run("negative_no_version_check", func(t *testing.T) {
		h, final := run(t, false)
		acked := int64(h.Count(storm.StatusOK))
		t.Logf("versioned/negative (UpdateByID after a separate Get): final %d of %d acknowledged: %d lost silently", final, acked, acked-final)
		err := storm.CheckCounter(h, final)
		if err == nil {
			t.Fatalf("negative control: no lost update detected (final %d of %d)", final, acked)
		}
		if countPrefix(anomalies(t, err), "lost update") != 1 {
			t.Errorf("negative control: CheckCounter did not report a lost update: %v", err)
		}
	})
}

// TestStormEtcdUpsert: seed 003 on etcd — processes importing the same
// three external keys, half by Upsert, half by Insert taking ErrDuplicate as
// "already there", under a unique index: exactly one record per key, and
// CheckSet sees each creation once. Control: check (Count) then Insert, with
// a plain (non-unique) index, makes duplicates and CheckSet catches them.
func TestStormEtcdUpsert(t *testing.T) {
	stormSkip(t)
	const procs = 20
	exts := []int64{1, 2, 3}
	run := func(t *testing.T, unique bool) (*storm.LoopResult, []psbase.Record, error) {
		var urls []string
		if !storm.IsChild() {
			fields := []psbase.Field{{Name: "ext", Type: psbase.Int, Unique: unique, Indexed: !unique}, {Name: "by", Type: psbase.Int}}
			urls = stormCreate(t, "", fields)
		}
		res := storm.Run(t, storm.Config{Procs: procs, Timeout: 3 * time.Minute, Args: stormArgs(urls)}, func(w *storm.Worker) error {
			s, err := workerStore(w)
			if err != nil {
				return err
			}
			defer s.Close()
			order := slices.Clone(exts)
			w.Rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, x := range order {
				// The operation is "create ext x": its input the ext, so
				// CheckSet's value; it is acknowledged only by the process
				// that created it, failed for one that found it there.
				id := w.Invoke("create", x)
				ctx, cancel := opCtx()
				v := psbase.Values{"ext": x, "by": w.Task}
				var created bool
				switch {
				case !unique:
					var n int
					if n, err = s.Count(ctx, psbase.Eq("ext", x)); err == nil && n == 0 { // check...
						_, err = s.Insert(ctx, v) // ...then act
						created = err == nil
					}
				case w.Task%2 == 0:
					_, created, err = s.Upsert(ctx, "ext", v)
				default:
					_, err = s.Insert(ctx, v)
					created = err == nil
					if errors.Is(err, psbase.ErrDuplicate) {
						err = nil
					}
				}
				cancel()
				if err != nil {
					return fmt.Errorf("ext=%d: %w", x, err)
				}
				if created {
					w.Ok(id, nil)
				} else {
					w.Fail(id, errors.New("already there"))
				}
			}
			return nil
		})
		l := onlyLoop(t, res)
		s := parentStore(t, urls[0])
		checkStore(t, s)
		ctx, cancel := opCtx()
		defer cancel()
		recs, err := s.Select(ctx, psbase.Query{})
		if err != nil {
			t.Fatal(err)
		}
		return l, recs, nil
	}
	// CheckSet needs unique values per operation: the creations of ext x by
	// different tasks are distinct operations with the same value, so each
	// ext is checked on its own, acknowledged creations against records.
	check := func(l *storm.LoopResult, recs []psbase.Record) (per map[int64]int, errs []error) {
		per = map[int64]int{}
		for _, x := range exts {
			var h storm.History
			for _, op := range l.History.Key("create") {
				if string(op.Input) == strconv.FormatInt(x, 10) && op.Status == storm.StatusOK {
					h = append(h, op)
				}
			}
			var set []storm.Record
			for _, r := range recs {
				if r.Values["ext"] == x {
					set = append(set, storm.Record{ID: r.ID, Value: x})
					per[x]++
				}
			}
			// One creation acknowledged: exactly one record. Several
			// acknowledged creations of one ext are themselves the anomaly
			// (CheckSet reports them as values inserted by several ops).
			if err := storm.CheckSet(h, set); err != nil {
				errs = append(errs, err)
			} else if len(h) != 1 {
				errs = append(errs, fmt.Errorf("ext=%d: %d acknowledged creations", x, len(h)))
			}
		}
		return per, errs
	}
	t.Run("unique_upsert", func(t *testing.T) {
		l, recs, _ := run(t, true)
		logLoop(t, "upsert", l)
		per, errs := check(l, recs)
		t.Logf("upsert: records per ext %v, %d creations acknowledged, %d found it there", per, l.History.Count(storm.StatusOK), l.History.Count(storm.StatusFail))
		for _, err := range errs {
			t.Error(err)
		}
		if len(recs) != len(exts) {
			t.Errorf("%d records, want %d", len(recs), len(exts))
		}
	})
	t.Run("negative_check_then_insert", func(t *testing.T) {
		l, recs, _ := run(t, false)
		logLoop(t, "upsert/negative", l)
		per, errs := check(l, recs)
		t.Logf("upsert/negative (Count then Insert, no unique index): records per ext %v: %d duplicates; CheckSet failed on %d of %d exts", per, len(recs)-len(exts), len(errs), len(exts))
		if len(errs) == 0 || len(recs) <= len(exts) {
			t.Fatalf("negative control: check-then-insert from %d processes made no duplicate the checker saw (%d records)", procs, len(recs))
		}
		dup := 0
		for _, err := range errs {
			var ce *storm.CheckError
			if errors.As(err, &ce) && countPrefix(ce.Anomalies, "value ") > 0 {
				dup++
			}
		}
		if dup == 0 {
			t.Errorf("negative control: CheckSet reported no duplicate creation: %v", errs)
		}
	})
}

// registerStorm runs processes doing random reads and writes of unique
// values on a few records (registers) of a store on etcd; cached serves half
// the reads of a key from a value the process saw before (a stale snapshot).
func registerStorm(t *testing.T, cached bool) (storm.History, string) {
	const keys, procs, ops = 3, 10, 16
	var urls []string
	if !storm.IsChild() {
		rows := make([]psbase.Values, keys)
		for i := range rows {
			rows[i] = psbase.Values{"val": 0}
		}
		urls = stormCreate(t, "", []psbase.Field{{Name: "val", Type: psbase.Int}}, rows...)
	}
	res := storm.Run(t, storm.Config{Procs: procs, Timeout: 3 * time.Minute, Args: stormArgs(urls)}, func(w *storm.Worker) error {
		s, err := workerStore(w)
		if err != nil {
			return err
		}
		defer s.Close()
		cache := map[int]int64{}
		for i := range ops {
			k := w.Rand.IntN(keys)
			if err := registerOp(w, s, k, i, cache, cached); err != nil {
				return err
			}
		}
		return nil
	})
	l := onlyLoop(t, res)
	logLoop(t, fmt.Sprintf("register cached=%v", cached), l)
	checkStore(t, parentStore(t, urls[0]))
	return l.History, res.Dir
}

// registerOp does one read or write of register k (record k+1, field val)
// and records it; a write's value is unique (task, i). With cached, half the
// reads of a key seen before come from the process's memory.
func registerOp(w *storm.Worker, s *psbase.Store, k, i int, cache map[int]int64, cached bool) error {
	return registerOpOn(w, s, fmt.Sprintf("r%d", k), uint64(k+1), i, cache, cached, false)
}

// registerOpOn is registerOp on record rid under history key key. With
// tolerant (a storm with faults), an error ends the operation instead of
// the task: failed when it certainly did not happen, left open (unknown)
// when the commit's outcome is unknown.
func registerOpOn(w *storm.Worker, s *psbase.Store, key string, rid uint64, i int, cache map[int]int64, cached, tolerant bool) error {
	k := int(rid)
	ctx, cancel := opCtx()
	defer cancel()
	if w.Rand.IntN(2) == 0 {
		id := w.Invoke(key, storm.ReadOp())
		if v, ok := cache[k]; cached && ok && w.Rand.IntN(2) == 0 {
			w.Ok(id, v) // a stale snapshot: what this process saw before
			return nil
		}
		rec, err := s.Get(ctx, rid)
		if err != nil {
			w.Fail(id, err)
			if tolerant {
				return nil
			}
			return err
		}
		v := rec.Values["val"].(int64)
		cache[k] = v
		w.Ok(id, v)
		return nil
	}
	v := int64(w.Task*1000 + i + 1)
	id := w.Invoke(key, storm.WriteOp(v))
	err := s.Txn(ctx, func(tx *psbase.Tx) error {
		_, err := tx.UpdateByID(rid, psbase.Values{"val": v})
		return err
	})
	switch {
	case err == nil:
		cache[k] = v
		w.Ok(id, nil)
		return nil
	case errors.Is(err, psbase.ErrUnknownOutcome):
		// left open: unknown
	default:
		w.Fail(id, err)
	}
	if tolerant {
		w.Logf("write %s: %v", key, err)
		return nil
	}
	return err
}

// TestStormEtcdRegister: reads (Get: a snapshot at the cluster's current,
// linearizable revision) and writes (Txn) of registers on etcd are
// linearizable (porcupine). Control: reads served from a stale snapshot are
// caught.
func TestStormEtcdRegister(t *testing.T) {
	stormSkip(t)
	t.Run("linearizable", func(t *testing.T) {
		h, dir := registerStorm(t, false)
		start := time.Now()
		err := storm.CheckRegister(h, storm.RegisterOptions{Initial: 0, Dir: dir, Timeout: 20 * time.Second})
		t.Logf("porcupine: %d ops checked in %v", len(h), time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Error(err)
		}
	})
	t.Run("negative_stale_snapshot", func(t *testing.T) {
		h, dir := registerStorm(t, true)
		err := storm.CheckRegister(h, storm.RegisterOptions{Initial: 0, Dir: dir, Timeout: 20 * time.Second})
		an := anomalies(t, err)
		t.Logf("register/negative (reads from a stale snapshot): %v", an)
		n := 0
		for _, a := range an {
			if strings.Contains(a, "is not linearizable") {
				n++
			}
		}
		if n == 0 {
			t.Errorf("negative control: porcupine accepted a history with stale reads: %v", err)
		}
	})
}

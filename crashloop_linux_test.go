//go:build linux

package psbase

// Crash loops over every write path: a child process runs a fixed cycle of
// operations (Insert, Upsert, Update, Delete, a two-record Txn, AddField,
// DropField, SetDefault, CreateIndex/DropIndex, Cleanup) against one store
// and is SIGKILLed at a random instant, hundreds of times. After each kill
// the parent checks that the lock is free, Check is clean, and the store is
// exactly the model of every acknowledged operation, plus or minus the one
// operation that was in flight — whole, never half. (Create, Create with
// overwrite and Open(WithCreate) have their own loop: TestCreateKilled.)

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clOps names the operations of the cycle, by i % len(clOps).
var clOps = []string{"insert", "upsert", "update", "delete", "txn2", "add-field", "drop-field", "set-default", "index", "cleanup"}

// clModel is what the store must hold: records by tag, the added fields in
// order, the default of n and whether n is indexed.
type clModel struct {
	recs     map[string]int64
	fields   []string
	def      int64
	nIndexed bool
}

func (m clModel) clone() clModel {
	c := m
	c.recs = maps.Clone(m.recs)
	c.fields = slices.Clone(m.fields)
	return c
}

func (m clModel) equal(o clModel) bool {
	return maps.Equal(m.recs, o.recs) && slices.Equal(m.fields, o.fields) && m.def == o.def && m.nIndexed == o.nIndexed
}

func (m clModel) String() string {
	return fmt.Sprintf("%d records, fields %v, default %d, indexed %v", len(m.recs), m.fields, m.def, m.nIndexed)
}

// clDiff describes how two models differ, briefly.
func clDiff(got, want clModel) string {
	var out []string
	for k, v := range want.recs {
		if g, ok := got.recs[k]; !ok {
			out = append(out, fmt.Sprintf("%s missing", k))
		} else if g != v {
			out = append(out, fmt.Sprintf("%s n=%d, want %d", k, g, v))
		}
	}
	for k := range got.recs {
		if _, ok := want.recs[k]; !ok {
			out = append(out, fmt.Sprintf("%s unexpected", k))
		}
	}
	if !slices.Equal(got.fields, want.fields) {
		out = append(out, fmt.Sprintf("fields %v, want %v", got.fields, want.fields))
	}
	if got.def != want.def || got.nIndexed != want.nIndexed {
		out = append(out, fmt.Sprintf("default %d indexed %v, want %d %v", got.def, got.nIndexed, want.def, want.nIndexed))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// apply returns the model after operation i, deciding exactly as the child
// does from the state before it.
func (m clModel) apply(i int) clModel {
	m = m.clone()
	tag := func(j int) string { return "t" + strconv.Itoa(j) }
	switch clOps[i%len(clOps)] {
	case "insert":
		m.recs[tag(i)] = int64(i)
	case "upsert":
		m.recs[tag(i-1)] = int64(10 * i)
	case "update":
		if _, ok := m.recs[tag(i-2)]; ok {
			m.recs[tag(i-2)] = int64(i)
		}
	case "delete":
		if clDeletes(i) {
			delete(m.recs, tag(i-3))
		}
	case "txn2":
		m.recs[tag(i)+"a"] = int64(i)
		m.recs[tag(i)+"b"] = int64(i)
	case "add-field":
		m.fields = append(m.fields, "f"+strconv.Itoa(i))
	case "drop-field":
		if clDrops(i) && len(m.fields) > 0 {
			m.fields = m.fields[:len(m.fields)-1]
		}
	case "set-default":
		m.def = int64(i)
	case "index":
		m.nIndexed = !m.nIndexed
	}
	return m
}

// clDeletes and clDrops thin out deletes and drops so that the store grows.
func clDeletes(i int) bool { return (i/len(clOps))%2 == 0 }
func clDrops(i int) bool   { return (i/len(clOps))%3 != 0 }

// clFields is the crash-loop store's schema at creation.
var clFields = []Field{{Name: "tag", Type: String, Unique: true}, {Name: "n", Type: Int}}

// crashLoopChild runs the cycle until killed, logging "begin i" before and
// "ok i" after each operation to db+".oplog" (unbuffered appends: a write
// that returned survives SIGKILL). weak is the negative control: it
// acknowledges inserts before doing them and splits the two-record
// transaction into two transactions, so a kill can lose an acknowledged
// write or leave half a transaction.
func crashLoopChild(ctx context.Context, db string, weak bool) {
	logPath := db + ".oplog"
	old, _ := os.ReadFile(logPath)
	next := strings.Count(string(old), "begin ")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	s, err := Open(ctx, db, WithLockTimeout(time.Minute))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("looping")
	tag := func(j int) string { return "t" + strconv.Itoa(j) }
	for i := next; ; i++ {
		fmt.Fprintf(log, "begin %d\n", i)
		var err error
		switch clOps[i%len(clOps)] {
		case "insert":
			if weak {
				fmt.Fprintf(log, "ok %d\n", i)
			}
			_, err = s.Insert(ctx, Values{"tag": tag(i), "n": i})
		case "upsert":
			_, _, err = s.Upsert(ctx, "tag", Values{"tag": tag(i - 1), "n": 10 * i})
		case "update":
			var rec Record
			if rec, err = s.GetBy(ctx, "tag", tag(i-2)); err == nil {
				_, err = s.Update(ctx, rec, Values{"n": i})
			} else if errors.Is(err, ErrNotFound) {
				err = nil
			}
		case "delete":
			if clDeletes(i) {
				var rec Record
				if rec, err = s.GetBy(ctx, "tag", tag(i-3)); err == nil {
					_, err = s.Delete(ctx, rec.ID)
				} else if errors.Is(err, ErrNotFound) {
					err = nil
				}
			}
		case "txn2":
			if weak {
				if _, err = s.Insert(ctx, Values{"tag": tag(i) + "a", "n": i}); err == nil {
					_, err = s.Insert(ctx, Values{"tag": tag(i) + "b", "n": i})
				}
				break
			}
			err = s.Txn(ctx, func(tx *Tx) error {
				if _, err := tx.Insert(Values{"tag": tag(i) + "a", "n": i}); err != nil {
					return err
				}
				_, err := tx.Insert(Values{"tag": tag(i) + "b", "n": i})
				return err
			})
		case "add-field":
			err = s.AddField(ctx, Field{Name: "f" + strconv.Itoa(i), Type: Int, Default: int64(i)}, "")
		case "drop-field":
			if clDrops(i) {
				var fields []Field
				if fields, err = s.Schema(ctx); err == nil {
					if f := clAdded(fields); len(f) > 0 {
						err = s.DropField(ctx, f[len(f)-1])
					}
				}
			}
		case "set-default":
			err = s.SetDefault(ctx, "n", int64(i))
		case "index":
			var fields []Field
			if fields, err = s.Schema(ctx); err == nil {
				if clIndexed(fields) {
					err = s.DropIndex(ctx, "n")
				} else {
					err = s.CreateIndex(ctx, "n")
				}
			}
		case "cleanup":
			_, err = s.Cleanup(ctx)
		}
		if err != nil {
			fmt.Fprintf(log, "error %d %s: %v\n", i, clOps[i%len(clOps)], err)
			fmt.Println("error:", err)
			os.Exit(3)
		}
		fmt.Fprintf(log, "ok %d\n", i)
	}
}

// clAdded lists the fields the cycle added, in schema order.
func clAdded(fields []Field) []string {
	var out []string
	for _, f := range fields {
		if strings.HasPrefix(f.Name, "f") {
			out = append(out, f.Name)
		}
	}
	return out
}

// clIndexed reports whether n is indexed.
func clIndexed(fields []Field) bool {
	for _, f := range fields {
		if f.Name == "n" {
			return f.Indexed || f.Unique
		}
	}
	return false
}

// clRead reads the store's state as a model.
func clRead(ctx context.Context, s *Store) (clModel, error) {
	m := clModel{recs: map[string]int64{}}
	fields, err := s.Schema(ctx)
	if err != nil {
		return m, err
	}
	m.fields = clAdded(fields)
	m.nIndexed = clIndexed(fields)
	for _, f := range fields {
		if f.Name == "n" && f.Default != nil {
			m.def, _ = f.Default.(int64)
		}
	}
	recs, err := s.Select(ctx, Query{})
	if err != nil {
		return m, err
	}
	for _, r := range recs {
		tag, _ := r.Values["tag"].(string)
		if _, dup := m.recs[tag]; dup {
			return m, fmt.Errorf("tag %s twice", tag)
		}
		m.recs[tag], _ = r.Values["n"].(int64)
	}
	return m, nil
}

// crashLoop kills the child (weak: the negative control) rounds times and
// verifies the store after each kill. It returns the first violation found
// (nil if none) and how many kills landed with each operation in flight.
func crashLoop(t *testing.T, rounds int, weak bool) (violation error, inFlight map[string]int) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "loop.db")
	if _, err := Create(ctx, db, clFields); err != nil {
		t.Fatal(err)
	}
	mode := "crashloop"
	if weak {
		mode = "crashloop-weak"
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	model := clModel{recs: map[string]int64{}}
	applied := 0 // operations 0..applied-1 are in the model
	inFlight = map[string]int{}
	for round := range rounds {
		cmd, line := startLooping(t, mode, db)
		if line != "looping\n" {
			b, _ := os.ReadFile(db + ".oplog")
			t.Fatalf("round %d: helper said %q; log tail: %s", round, line, clTail(string(b)))
		}
		time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()

		// What the child acknowledged, and what was in flight.
		b, err := os.ReadFile(db + ".oplog")
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.Index(string(b), "error "); i >= 0 {
			t.Fatalf("round %d: the child failed: %s", round, clTail(string(b[i:])))
		}
		pending := -1
		for l := range strings.Lines(string(b)) {
			verb, num, _ := strings.Cut(strings.TrimSpace(l), " ")
			i, _ := strconv.Atoi(num)
			switch {
			case verb == "begin" && i >= applied:
				pending = i
			case verb == "ok" && i >= applied:
				if i != applied {
					t.Fatalf("round %d: log acknowledges %d after %d", round, i, applied-1)
				}
				model = model.apply(i)
				applied++
				pending = -1
			}
		}

		// The lock is free, the store is sound, and it is the model with
		// or without the one operation in flight.
		start := time.Now()
		s, err := Open(ctx, db, WithLockTimeout(10*time.Second))
		if err != nil {
			t.Fatalf("round %d: Open after the kill: %v", round, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("round %d: Open after the kill waited %v: a lock outlived its holder", round, took)
		}
		if rep, err := s.Check(ctx); err != nil || !rep.OK() {
			return fmt.Errorf("round %d: Check after a kill in %s: %v %v", round, clOpName(pending), err, rep.Problems), inFlight
		}
		got, err := clRead(ctx, s)
		if err != nil {
			return fmt.Errorf("round %d: reading the store: %v", round, err), inFlight
		}
		if pending >= 0 {
			inFlight[clOps[pending%len(clOps)]]++
		}
		switch {
		case pending >= 0 && got.equal(model.apply(pending)):
			model = model.apply(pending)
			applied = pending + 1
			// The child's next run starts after the pending operation.
			if err := appendLine(db+".oplog", fmt.Sprintf("ok %d\n", pending)); err != nil {
				t.Fatal(err)
			}
		case got.equal(model):
			if pending >= 0 {
				applied = pending + 1 // not applied: skipped for good
				if err := appendLine(db+".oplog", fmt.Sprintf("skipped %d\n", pending)); err != nil {
					t.Fatal(err)
				}
			}
		default:
			return fmt.Errorf("round %d: after a kill in %s the store is neither the acknowledged state nor it plus the operation in flight: %s",
				round, clOpName(pending), clDiff(got, model)), inFlight
		}
		// Nothing but the store's own files beside it.
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			switch strings.TrimPrefix(e.Name(), "loop.db") {
			case "", suffixLock, suffixGate, suffixCompact, suffixCreating, suffixQueue, ".oplog":
			default:
				return fmt.Errorf("round %d: a stray file %s after a kill in %s", round, e.Name(), clOpName(pending)), inFlight
			}
		}
	}
	return nil, inFlight
}

func clOpName(i int) string {
	if i < 0 {
		return "no operation (between two)"
	}
	return fmt.Sprintf("%s (#%d)", clOps[i%len(clOps)], i)
}

func clTail(s string) string {
	if len(s) > 400 {
		return s[len(s)-400:]
	}
	return s
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	return errors.Join(err, f.Close())
}

// TestWritePathsKilled: SIGKILL at random instants during every write path;
// after each kill the store is exactly every acknowledged operation, plus or
// minus the whole one in flight. Its negative control is
// TestWritePathsKilledControl.
func TestWritePathsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process 300 times")
	}
	rounds := 300
	if f := flag.Lookup("storm.long"); f != nil && f.Value.String() == "true" {
		rounds = 1000
	}
	err, inFlight := crashLoop(t, rounds, false)
	if err != nil {
		t.Fatal(err)
	}
	// Name the coverage: which operations the kills interrupted.
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(inFlight)) {
		parts = append(parts, fmt.Sprintf("%s %d", n, inFlight[n]))
	}
	t.Logf("%d kills; by operation in flight: %s", rounds, strings.Join(parts, ", "))
	if len(inFlight) < len(clOps)/2 {
		t.Errorf("kills interrupted only %d of the %d operations (%v): the loop did not test the rest", len(inFlight), len(clOps), inFlight)
	}
}

// TestWritePathsKilledControl: the same loop against a child that
// acknowledges inserts before doing them and splits a transaction in two.
// The checker must catch it (a lost acknowledged write or half a
// transaction) well within its rounds.
func TestWritePathsKilledControl(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process up to 400 times")
	}
	err, _ := crashLoop(t, 400, true)
	if err == nil {
		t.Fatal("400 kills of a child that acknowledges early and splits its transaction: the checker found nothing")
	}
	t.Logf("caught, as it must be: %v", err)
}

package psbase_test

// Helpers of the process storms in concurrency_test.go.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/storm"
)

// -storm.long turns on the heavier soaks. The storm package defines a flag of
// that name only in its own tests; reuse one if another file of this test
// binary registered it, define it otherwise. Storm passes non-testing flags on
// to the children, so they take the same path through a test.
func init() {
	if flag.Lookup("storm.long") == nil {
		flag.Bool("storm.long", false, "run the long process-storm soaks (more processes, loops and kills)")
	}
}

// ccLong reports whether -storm.long was given.
func ccLong() bool {
	f := flag.Lookup("storm.long")
	return f != nil && f.Value.String() == "true"
}

// ccRace reports whether the binary was built with -race (children
// start slower and use more memory then).
func ccRace() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// pick returns the default-run value, or the -storm.long one.
func ccPick(normal, long int) int {
	if ccLong() {
		return long
	}
	return normal
}

// ccSkipShort skips process storms under -short (CI runs the in-process tests
// with -race -short separately).
func ccSkipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("process storm: skipped with -short")
	}
}

// ccDB is the store of a storm loop, in its shared directory.
func ccDB(dir string) string { return filepath.Join(dir, "store.db") }

var ccCtx = context.Background()

// ccCreate creates the store of a loop (in Config.Setup, parent only)
// and inserts rows, in one transaction.
func ccCreate(dir string, fields []psbase.Field, rows ...psbase.Values) error {
	s, err := psbase.Create(ccCtx, ccDB(dir), fields)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	return s.Txn(ccCtx, func(tx *psbase.Tx) error {
		for _, r := range rows {
			if _, err := tx.Insert(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// ccOpen opens the loop's store in a child.
func ccOpen(w *storm.Worker, opts ...psbase.Option) (*psbase.Store, error) {
	return psbase.Open(ccCtx, ccDB(w.Dir), opts...)
}

// ccParentStore opens a loop's store in the parent, failing the test if it
// cannot.
func ccParentStore(t *testing.T, dir string) *psbase.Store {
	t.Helper()
	s, err := psbase.Open(ccCtx, ccDB(dir), psbase.WithLockTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("open store after the storm: %v", err)
	}
	return s
}

// ccCheck runs psbase's full integrity check (bbolt pages, CRC of every
// record, count, sequence, indexes) on a loop's store after the storm.
func ccCheck(t *testing.T, s *psbase.Store) psbase.CheckReport {
	t.Helper()
	rep, err := s.Check(ccCtx)
	if err != nil {
		t.Errorf("Check after the storm: %v (problems: %v)", err, rep.Problems)
	}
	return rep
}

// ccInt returns an Int field's value.
func ccInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int:
		return int64(x)
	case float64:
		return int64(x)
	}
	panic(fmt.Sprintf("not an int: %T %v", v, v))
}

// ccIntField reads an Int field of a record in the parent.
func ccIntField(t *testing.T, s *psbase.Store, id uint64, field string) int64 {
	t.Helper()
	r, err := s.Get(ccCtx, id)
	if err != nil {
		t.Fatalf("get record %d: %v", id, err)
	}
	return ccInt(r.Values[field])
}

// ccAll returns the whole table.
func ccAll(t *testing.T, s *psbase.Store) []psbase.Record {
	t.Helper()
	recs, err := s.Select(ccCtx, psbase.Query{})
	if err != nil {
		t.Fatalf("select all: %v", err)
	}
	return recs
}

// ccSet turns records into storm.Records (ID, value of field) for CheckSet.
func ccSet(recs []psbase.Record, field string) []storm.Record {
	out := make([]storm.Record, 0, len(recs))
	for _, r := range recs {
		out = append(out, storm.Record{ID: r.ID, Value: r.Values[field]})
	}
	return out
}

// anomalies returns the anomalies of a checker's error (nil for nil) and
// fails the test if err is some other error.
func ccAnomalies(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *storm.CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("checker returned %T, not *storm.CheckError: %v", err, err)
	}
	return ce.Anomalies
}

// ccCountPrefix counts the strings that start with prefix.
func ccCountPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// ccResults decodes the children's SetResult values (killed tasks have
// none and are skipped).
func ccResults[T any](t *testing.T, l *storm.LoopResult) []T {
	t.Helper()
	var out []T
	for _, tr := range l.Tasks {
		if tr.Result == nil {
			continue
		}
		var v T
		if err := json.Unmarshal(tr.Result, &v); err != nil {
			t.Fatalf("task %d: bad result %s: %v", tr.Task, tr.Result, err)
		}
		out = append(out, v)
	}
	return out
}

// ccSortedInts returns the Int values of field, sorted.
func ccSortedInts(recs []psbase.Record, field string) []int64 {
	out := make([]int64, 0, len(recs))
	for _, r := range recs {
		out = append(out, ccInt(r.Values[field]))
	}
	slices.Sort(out)
	return out
}

// ccPhases formats kill phases deterministically.
func ccPhases(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// ccLogLoop logs the harness numbers of a loop.
func ccLogLoop(t *testing.T, what string, l *storm.LoopResult) {
	t.Helper()
	t.Logf("%s: %d tasks, skew %v, max in flight %d, %d ops, wall %v",
		what, len(l.Tasks), l.Skew, l.MaxInFlight, len(l.History), l.Wall.Round(time.Millisecond))
}

// only returns the single loop of a one-loop storm.
func ccOnly(t *testing.T, res *storm.Result) *storm.LoopResult {
	t.Helper()
	if len(res.Loops) != 1 {
		t.Fatalf("storm ran %d loops, want 1", len(res.Loops))
	}
	return res.Loops[0]
}

// ccJSON decodes a JSON value (a history input or output, a task result).
func ccJSON(raw []byte, v any) error { return json.Unmarshal(raw, v) }

package psbase

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var indexFields = []Field{
	{Name: "k", Type: Int, Indexed: true},
	{Name: "s", Type: String, Indexed: true},
	{Name: "f", Type: Float, Nullable: true, Indexed: true},
	{Name: "ext", Type: Int, Nullable: true, Unique: true},
	{Name: "plain", Type: Int},
}

func plainFields() []Field {
	out := append([]Field(nil), indexFields...)
	for i := range out {
		out[i].Indexed, out[i].Unique = false, false
	}
	return out
}

// randomQuery draws a select that exercises every access path.
func randomQuery(r *rand.Rand) Query {
	var q Query
	strs := []string{"", "a", "ab", "abc", "b", "ba", "c"}
	switch r.IntN(9) {
	case 0:
		q.Where = []Filter{Eq("k", r.IntN(10))}
	case 1:
		q.Where = []Filter{In("s", strs[r.IntN(len(strs))], strs[r.IntN(len(strs))])}
	case 2:
		q.Where = []Filter{Between("k", r.IntN(10), r.IntN(10))}
	case 3:
		q.Where = []Filter{Gt("f", float64(r.IntN(10))-5)}
	case 4:
		q.Where = []Filter{Prefix("s", strs[r.IntN(len(strs))])}
	case 5:
		q.Where = []Filter{IsNull("f")}
	case 6:
		q.Where = []Filter{Lt("k", r.IntN(10)), Eq("plain", r.IntN(3))}
	case 7:
		q.Where = []Filter{Le("s", strs[r.IntN(len(strs))])}
	}
	if r.IntN(2) == 0 {
		fields := []string{"k", "s", "f", "plain"}
		q.OrderBy = []Order{{Field: fields[r.IntN(len(fields))], Desc: r.IntN(2) == 0}}
	}
	if r.IntN(2) == 0 {
		q.Limit = 1 + r.IntN(5)
	}
	if r.IntN(4) == 0 {
		q.Offset = r.IntN(3)
	}
	return q
}

// TestIndexModel applies random inserts, updates, deletes and upserts to an
// indexed store and to an identical store without indexes: every Select
// (index or not, per Explain) must return exactly what the full scan does,
// and Check must stay clean.
func TestIndexModel(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ix, err := Create(ctx, filepath.Join(dir, "ix.db"), indexFields, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Create(ctx, filepath.Join(dir, "plain.db"), plainFields(), WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 11))
	strs := []string{"", "a", "ab", "abc", "b", "ba", "c", "a\x00"}
	randVals := func() Values {
		v := Values{"k": r.IntN(10), "s": strs[r.IntN(len(strs))], "plain": r.IntN(3)}
		if r.IntN(4) > 0 {
			v["f"] = float64(r.IntN(20)) - 10
		} else {
			v["f"] = nil
		}
		return v
	}
	var ids []uint64
	usedPlans := map[string]int{}
	for step := range 1500 {
		switch op := r.IntN(10); {
		case op < 4 || len(ids) == 0:
			v := randVals()
			id1, err1 := ix.Insert(ctx, v)
			id2, err2 := plain.Insert(ctx, v)
			if err1 != nil || err2 != nil || id1 != id2 {
				t.Fatalf("insert: %v %v %d %d", err1, err2, id1, id2)
			}
			ids = append(ids, id1)
		case op < 6:
			id := ids[r.IntN(len(ids))]
			v := randVals()
			delete(v, "s")
			err1 := ix.Txn(ctx, func(tx *Tx) error { _, err := tx.UpdateByID(id, v); return err })
			err2 := plain.Txn(ctx, func(tx *Tx) error { _, err := tx.UpdateByID(id, v); return err })
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("update: %v vs %v", err1, err2)
			}
		case op < 7:
			i := r.IntN(len(ids))
			n1, err1 := ix.Delete(ctx, ids[i])
			n2, err2 := plain.Delete(ctx, ids[i])
			if n1 != n2 || (err1 == nil) != (err2 == nil) {
				t.Fatalf("delete: %d %v vs %d %v", n1, err1, n2, err2)
			}
			ids = append(ids[:i], ids[i+1:]...)
		case op < 8:
			// Unique column: upsert in the indexed store, emulate in plain.
			ext := r.IntN(15)
			v := randVals()
			v["ext"] = ext
			id, inserted, err := ix.Upsert(ctx, "ext", v)
			if err != nil {
				t.Fatal(err)
			}
			err = plain.Txn(ctx, func(tx *Tx) error {
				recs, err := tx.Select(Query{Where: []Filter{Eq("ext", ext)}})
				if err != nil {
					return err
				}
				if len(recs) == 0 {
					if !inserted {
						return fmt.Errorf("upsert updated, model has no ext=%d", ext)
					}
					nid, err := tx.Insert(v)
					if nid != id {
						return fmt.Errorf("ids differ %d %d", nid, id)
					}
					return err
				}
				if inserted || recs[0].ID != id {
					return fmt.Errorf("upsert inserted %v id %d, model has %d", inserted, id, recs[0].ID)
				}
				_, err = tx.UpdateByID(id, v)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if inserted {
				ids = append(ids, id)
			}
		default:
			q := randomQuery(r)
			got, err1 := ix.Select(ctx, q)
			want, err2 := plain.Select(ctx, q)
			if err1 != nil || err2 != nil {
				t.Fatalf("select: %v %v", err1, err2)
			}
			if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
				plan, _ := ix.Explain(ctx, q)
				t.Fatalf("step %d: query %+v via %s:\n got %v\nwant %v", step, q, plan, got, want)
			}
			plan, _ := ix.Explain(ctx, q)
			usedPlans[plan.Access]++
			n1, _ := ix.Count(ctx, q.Where...)
			n2, _ := plain.Count(ctx, q.Where...)
			if n1 != n2 {
				t.Fatalf("count %+v: %d vs %d", q.Where, n1, n2)
			}
		}
	}
	t.Logf("plans used: %v", usedPlans)
	for _, access := range []string{"scan", "eq", "in", "range", "prefix", "order"} {
		if usedPlans[access] == 0 {
			t.Errorf("the model test never exercised the %q plan", access)
		}
	}
	if rep, err := ix.Check(ctx); err != nil {
		t.Fatalf("check: %v %v", err, rep.Problems)
	}
}

func TestUniqueIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "u.db")
	s, err := Create(ctx, path, indexFields)
	if err != nil {
		t.Fatal(err)
	}
	id := mustInsert(t, s, Values{"ext": 1, "s": "a"})
	before := fileHash(t, path)
	_, err = s.Insert(ctx, Values{"ext": 1, "s": "b"})
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate insert: %v", err)
	}
	if msg := err.Error(); !contains(msg, `"ext"`) || !contains(msg, "1") {
		t.Fatalf("error does not name field and value: %s", msg)
	}
	if fileHash(t, path) != before {
		t.Fatal("refused insert changed the file")
	}
	// Many nulls are fine.
	mustInsert(t, s, Values{"ext": nil})
	mustInsert(t, s, Values{"ext": nil})
	// Updating another record to the taken value is refused too.
	other := mustInsert(t, s, Values{"ext": 2})
	if _, err := s.Update(ctx, mustGet(t, s, other), Values{"ext": 1}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate update: %v", err)
	}
	// Updating a record to its own value is fine.
	if _, err := s.Update(ctx, mustGet(t, s, id), Values{"ext": 1, "s": "z"}); err != nil {
		t.Fatal(err)
	}
	r, err := s.GetBy(ctx, "ext", 1)
	if err != nil || r.ID != id || r.Values["s"] != "z" {
		t.Fatalf("GetBy: %+v %v", r, err)
	}
	if _, err := s.GetBy(ctx, "ext", 99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetBy missing: %v", err)
	}
	if _, err := s.GetBy(ctx, "k", 1); !errors.Is(err, ErrSchema) {
		t.Fatalf("GetBy non-unique: %v", err)
	}
	// Upsert: update then insert.
	uid, inserted, err := s.Upsert(ctx, "ext", Values{"ext": 2, "s": "upd"})
	if err != nil || inserted || uid != other || mustGet(t, s, other).Values["s"] != "upd" {
		t.Fatalf("upsert update: %d %v %v", uid, inserted, err)
	}
	uid, inserted, err = s.Upsert(ctx, "ext", Values{"ext": 3, "s": "new"})
	if err != nil || !inserted || mustGet(t, s, uid).Values["s"] != "new" {
		t.Fatalf("upsert insert: %d %v %v", uid, inserted, err)
	}
	if _, _, err := s.Upsert(ctx, "k", Values{"k": 1}); !errors.Is(err, ErrSchema) {
		t.Fatalf("upsert on non-unique key: %v", err)
	}
	// Building a unique index over duplicate data fails and changes nothing.
	mustInsert(t, s, Values{"plain": 5})
	mustInsert(t, s, Values{"plain": 5})
	before = fileHash(t, path)
	if err := s.CreateIndex(ctx, "plain", Unique()); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("unique index over duplicates: %v", err)
	}
	if fileHash(t, path) != before {
		t.Fatal("failed CreateIndex changed the file")
	}
	if err := s.CreateIndex(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateIndex(ctx, "plain"); !errors.Is(err, ErrSchema) {
		t.Fatalf("second index on a field: %v", err)
	}
	if p, _ := s.Explain(ctx, Query{Where: []Filter{Eq("plain", 5)}}); p.Index != "plain" || p.Access != "eq" {
		t.Fatalf("plan %v", p)
	}
	if err := s.DropIndex(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Explain(ctx, Query{Where: []Filter{Eq("plain", 5)}}); p.Index != "" {
		t.Fatalf("plan after drop %v", p)
	}
	// Dropping an indexed field drops its index.
	if err := s.DropField(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Check(ctx); err != nil {
		t.Fatalf("check: %v %v", err, rep.Problems)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

func TestCreateIndexProgressAndDefaults(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	err := s.Txn(ctx, func(tx *Tx) error {
		for i := range 2500 {
			if _, err := tx.Insert(Values{"n": i % 10}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var calls []int
	if err := s.CreateIndex(ctx, "n", IndexProgress(func(done, total int) { calls = append(calls, done) })); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || calls[len(calls)-1] != 2500 {
		t.Fatalf("progress calls %v", calls)
	}
	// A field added later with an index reads its default in the index, and
	// SetDefault rebuilds it.
	if err := s.AddField(ctx, Field{Name: "tag", Type: String, Default: "x", Indexed: true}, ""); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, Eq("tag", "x")); n != 2500 {
		t.Fatalf("indexed default: %d", n)
	}
	if err := s.SetDefault(ctx, "tag", "y"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, Eq("tag", "y")); n != 2500 {
		t.Fatalf("after SetDefault: %d", n)
	}
	if rep, err := s.Check(ctx); err != nil {
		t.Fatalf("check: %v %v", err, rep.Problems)
	}
}

// TestCheckFindsIndexDamage: entries removed, added or left stale behind the
// store's back (through bbolt directly) are all reported.
func TestCheckFindsIndexDamage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "d.db")
	s, err := Create(ctx, path, indexFields)
	if err != nil {
		t.Fatal(err)
	}
	a := mustInsert(t, s, Values{"k": 1, "ext": 1})
	b := mustInsert(t, s, Values{"k": 2, "ext": 2})
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	sch := func(tx *bolt.Tx) *schema { sc, _ := decodeSchema(tx.Bucket(bucketMeta).Get(keySchema)); return sc }
	err = db.Update(func(tx *bolt.Tx) error {
		sc := sch(tx)
		k, _ := sc.field("k")
		ext, _ := sc.field("ext")
		ix := tx.Bucket(bucketIndexes)
		_ = ix.Bucket([]byte("k")).Delete(entryKey(k, int64(1), a))            // missing
		_ = ix.Bucket([]byte("k")).Put(entryKey(k, int64(9), 77), []byte{})    // no such record
		_ = ix.Bucket([]byte("ext")).Put(entryKey(ext, int64(1), b), []byte{}) // stale + duplicate
		_, err := ix.CreateBucket([]byte("stray"))
		return err
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Check(ctx)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("check: %v", err)
	}
	want := []string{"entry missing", "no such record", "stale entry", "duplicate under unique", "bucket without an index"}
	for _, w := range want {
		found := false
		for _, p := range rep.Problems {
			found = found || contains(p.String(), w)
		}
		if !found {
			t.Errorf("check did not report %q; problems: %v", w, rep.Problems)
		}
	}
}

func TestIndexSurvivesCleanup(t *testing.T) {
	ctx := context.Background()
	s, err := Create(ctx, filepath.Join(t.TempDir(), "c.db"), indexFields)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		mustInsert(t, s, Values{"k": i % 7, "ext": i})
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, Eq("k", 3)); n != 14 {
		t.Fatalf("count after cleanup %d", n)
	}
	if _, err := s.Insert(ctx, Values{"ext": 5}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("unique after cleanup: %v", err)
	}
	if rep, err := s.Check(ctx); err != nil {
		t.Fatalf("%v %v", err, rep.Problems)
	}
	_ = os.Remove
}

package psbase

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

// keysetStore is a store of n records with an indexed field "g" (few
// distinct values), an unindexed nullable "h" and a nullable indexed "k",
// some records deleted so that IDs have holes.
func keysetStore(t *testing.T, n int) (*Store, []Record) {
	t.Helper()
	ctx := context.Background()
	s, err := Create(ctx, filepath.Join(t.TempDir(), "k.db"), []Field{
		{Name: "g", Type: Int, Indexed: true},
		{Name: "h", Type: Int, Nullable: true},
		{Name: "k", Type: String, Nullable: true, Indexed: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	err = s.Txn(ctx, func(tx *Tx) error {
		for i := range n {
			v := Values{"g": int64(rng.IntN(7))}
			if rng.IntN(4) > 0 {
				v["h"] = int64(rng.IntN(50))
			}
			if rng.IntN(3) > 0 {
				v["k"] = fmt.Sprintf("k%02d", rng.IntN(20))
			}
			if _, err := tx.Insert(v); err != nil {
				return err
			}
			if i%9 == 4 {
				if _, err := tx.Delete(uint64(i)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.Select(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	return s, all
}

// Filters on "id" and OrderBy "id" give what a filter over the whole table
// gives.
func TestIDFilters(t *testing.T) {
	ctx := context.Background()
	s, all := keysetStore(t, 300)
	ids := func(recs []Record) []uint64 {
		out := make([]uint64, len(recs))
		for i, r := range recs {
			out[i] = r.ID
		}
		return out
	}
	model := func(keep func(r Record) bool, desc bool) []uint64 {
		var out []uint64
		for _, r := range all {
			if keep(r) {
				out = append(out, r.ID)
			}
		}
		if desc {
			slices.Reverse(out)
		}
		return out
	}
	cases := []struct {
		name   string
		q      Query
		keep   func(Record) bool
		desc   bool
		access string
	}{
		{"eq", Query{Where: []Filter{Eq("id", 10)}}, func(r Record) bool { return r.ID == 10 }, false, "ids"},
		{"in", Query{Where: []Filter{In("id", 3, 5, 5, 999, -1, 6)}}, func(r Record) bool { return r.ID == 3 || r.ID == 5 || r.ID == 6 }, false, "ids"},
		{"in-desc", Query{Where: []Filter{In("ID", 3, 5, 6)}, OrderBy: []Order{Desc("id")}}, func(r Record) bool { return r.ID == 3 || r.ID == 5 || r.ID == 6 }, true, "ids"},
		{"range", Query{Where: []Filter{Gt("id", 20), Le("id", 40)}}, func(r Record) bool { return r.ID > 20 && r.ID <= 40 }, false, "id-range"},
		{"between", Query{Where: []Filter{Between("id", 50, 60)}}, func(r Record) bool { return r.ID >= 50 && r.ID <= 60 }, false, "id-range"},
		{"range-desc", Query{Where: []Filter{Ge("id", 20), Lt("id", 40)}, OrderBy: []Order{Desc("id")}}, func(r Record) bool { return r.ID >= 20 && r.ID < 40 }, true, "id-range"},
		{"ne", Query{Where: []Filter{Ne("id", 1), Lt("id", 5)}}, func(r Record) bool { return r.ID != 1 && r.ID < 5 }, false, "id-range"},
		{"null", Query{Where: []Filter{Eq("id", nil)}}, func(Record) bool { return false }, false, "id-range"},
		{"empty", Query{Where: []Filter{Gt("id", 40), Lt("id", 30)}}, func(Record) bool { return false }, false, "id-range"},
		{"negative", Query{Where: []Filter{Lt("id", -3)}}, func(Record) bool { return false }, false, "id-range"},
		{"desc", Query{OrderBy: []Order{Desc("id")}}, func(Record) bool { return true }, true, "scan"},
		{"with-index", Query{Where: []Filter{Eq("g", 3), Gt("id", 100)}}, func(r Record) bool { return r.Values["g"] == int64(3) && r.ID > 100 }, false, "eq"},
		{"with-index-desc", Query{Where: []Filter{Eq("g", 3)}, OrderBy: []Order{Desc("id")}}, func(r Record) bool { return r.Values["g"] == int64(3) }, true, "eq"},
		{"range-index-desc", Query{Where: []Filter{Ge("g", 5)}, OrderBy: []Order{Desc("id")}}, func(r Record) bool { return r.Values["g"].(int64) >= 5 }, true, "range"},
	}
	for _, c := range cases {
		got, err := s.Select(ctx, c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if want := model(c.keep, c.desc); !slices.Equal(ids(got), want) {
			t.Errorf("%s: got %v\nwant %v", c.name, ids(got), want)
		}
		if n, err := s.Count(ctx, c.q.Where...); err != nil || n != len(model(c.keep, false)) {
			t.Errorf("%s: Count %d %v", c.name, n, err)
		}
		if p, err := s.Explain(ctx, c.q); err != nil || p.Access != c.access {
			t.Errorf("%s: plan %+v %v, want access %s", c.name, p, err, c.access)
		}
	}
	for _, bad := range []Filter{Gt("id", "x"), Prefix("id", "1"), Eq("id", 1.5)} {
		if _, err := s.Select(ctx, Query{Where: []Filter{bad}}); !errors.Is(err, ErrSchema) {
			t.Errorf("filter %+v: %v", bad, err)
		}
	}
}

// pageAll reads q's whole result in pages of size, each continuing after
// the last record of the one before (or, broken, after the one before last).
func pageAll(t *testing.T, s *Store, q Query, size int, broken bool) []uint64 {
	t.Helper()
	var out []uint64
	q.Limit = size
	for range 10_000 {
		page, err := s.Select(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			out = append(out, r.ID)
		}
		if len(page) < size {
			return out
		}
		last := page[len(page)-1]
		if broken && len(page) > 1 {
			last = page[len(page)-2]
		}
		q.After = &last
	}
	t.Fatal("paging does not end")
	return nil
}

// Paging with After through any order gives exactly the full result, in
// order, each record once; the checker catches a pager that continues from
// the wrong record (negative control).
func TestKeysetPagination(t *testing.T) {
	ctx := context.Background()
	s, _ := keysetStore(t, 400)
	orders := [][]Order{
		nil,
		{Asc("id")},
		{Desc("id")},
		{Asc("g")},
		{Desc("g")},
		{Asc("k")}, // indexed, nullable
		{Desc("k")},
		{Asc("h")}, // not indexed, nullable
		{Desc("h"), Asc("g")},
		{Asc("g"), Desc("id")},
	}
	wheres := [][]Filter{nil, {Ge("g", 2)}, {Ne("k", nil)}, {Gt("id", 37), Lt("id", 300)}}
	for _, o := range orders {
		for _, w := range wheres {
			q := Query{Where: w, OrderBy: o}
			full, err := s.Select(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]uint64, len(full))
			for i, r := range full {
				want[i] = r.ID
			}
			for _, size := range []int{1, 7, 64} {
				if got := pageAll(t, s, q, size, false); !slices.Equal(got, want) {
					t.Errorf("order %v where %v pages of %d:\n got %v\nwant %v", o, w, size, got, want)
				}
			}
			if len(want) > 7 {
				if got := pageAll(t, s, q, 7, true); slices.Equal(got, want) {
					t.Errorf("negative control: a pager continuing from the wrong record went unnoticed (order %v)", o)
				}
			}
		}
	}
	// After needs the order's fields.
	r := Record{ID: 5, Values: Values{"h": int64(1)}}
	if _, err := s.Select(ctx, Query{OrderBy: []Order{Asc("g")}, After: &r}); !errors.Is(err, ErrSchema) {
		t.Errorf("After without the order's field: %v", err)
	}
	if _, err := s.Select(ctx, Query{After: &Record{}}); !errors.Is(err, ErrSchema) {
		t.Errorf("After a record with ID 0: %v", err)
	}
	// In ID order, After turns into a walk that starts past it.
	if p, _ := s.Explain(ctx, Query{After: &r}); p.Access != "id-range" {
		t.Errorf("plan of After in ID order: %+v", p)
	}
	if p, _ := s.Explain(ctx, Query{OrderBy: []Order{Asc("g")}, Limit: 10, After: &Record{ID: 5, Values: Values{"g": int64(3)}}}); p.Index != "g" || !p.Ordered {
		t.Errorf("plan of After on an indexed order: %+v", p)
	}
	// Scan continues after Query.After too.
	var got []uint64
	for rec, err := range s.Scan(ctx, Query{After: &r, Limit: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.ID)
	}
	if len(got) != 3 || got[0] <= 5 {
		t.Errorf("Scan after 5: %v", got)
	}
}

package psbase

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testFields is the schema most tests use.
var testFields = []Field{
	{Name: "name", Type: String},
	{Name: "n", Type: Int, Default: int64(7)},
	{Name: "score", Type: Float},
	{Name: "ok", Type: Bool},
	{Name: "at", Type: Time, Nullable: true},
	{Name: "blob", Type: Bytes, Nullable: true},
}

func newTestStore(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	return newTestStoreFields(t, testFields, opts...)
}

func newTestStoreFields(t testing.TB, fields []Field, opts ...Option) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := Create(context.Background(), path, fields, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

// incrementInTxn adds one to record id's "n" by a read-modify-write inside
// Txn: the pattern that loses updates without the store's lock.
func incrementInTxn(ctx context.Context, s *Store, id uint64) error {
	return s.Txn(ctx, func(tx *Tx) error {
		r, err := tx.Get(id)
		if err != nil {
			return err
		}
		_, err = tx.UpdateByID(id, Values{"n": r.Values["n"].(int64) + 1})
		return err
	})
}

// fileHash fingerprints a file so tests can assert "changed nothing".
func fileHash(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "missing: " + err.Error()
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func mustInsert(t testing.TB, s *Store, v any) uint64 {
	t.Helper()
	id, err := s.Insert(context.Background(), v)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCreateOpenLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")

	// Open of a missing store: ErrNotExist, and nothing is created.
	if _, err := Open(ctx, path); !errors.Is(err, ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("open of a missing store left files: %v", ents)
	}

	s, err := Create(ctx, path, testFields)
	if err != nil {
		t.Fatal(err)
	}
	id := mustInsert(t, s, Values{"name": "a"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed store: %v", err)
	}

	// Create over an existing store refuses and changes nothing.
	before := fileHash(t, path)
	if _, err := Create(ctx, path, testFields); !errors.Is(err, ErrExists) {
		t.Fatalf("create over existing: %v", err)
	}
	if fileHash(t, path) != before {
		t.Fatal("refused Create changed the file")
	}

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(ctx, id); err != nil || r.Values["name"] != "a" {
		t.Fatalf("reopened: %+v %v", r, err)
	}

	// WithOverwrite replaces it.
	s2, err := Create(ctx, path, []Field{{Name: "x", Type: Int}}, WithOverwrite())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s2.Len(ctx); n != 0 {
		t.Fatalf("overwritten store has %d records", n)
	}

	// WithCreate opens or creates.
	p2 := filepath.Join(dir, "b.db")
	s3, err := Open(ctx, p2, WithCreate(testFields))
	if err != nil {
		t.Fatal(err)
	}
	mustInsert(t, s3, Values{"name": "b"})
	s4, err := Open(ctx, p2, WithCreate(testFields))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s4.Len(ctx); n != 1 {
		t.Fatalf("open-or-create recreated the store: %d records", n)
	}

	// Destroy removes every file and closes the handle.
	if err := s4.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", ".lock"} {
		if _, err := os.Stat(p2 + suffix); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Destroy left %s%s", p2, suffix)
		}
	}
	if _, err := s4.Len(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("destroyed handle: %v", err)
	}
	// The other handle finds the store gone; it is not silently recreated.
	if _, err := s3.Insert(ctx, Values{"name": "c"}); !errors.Is(err, ErrNotExist) {
		t.Errorf("insert into destroyed store: %v", err)
	}
	if _, err := os.Stat(p2); !errors.Is(err, os.ErrNotExist) {
		t.Error("a write to a destroyed store recreated the file")
	}
}

func TestSchemaValidation(t *testing.T) {
	cases := []struct {
		name   string
		fields []Field
	}{
		{"empty", nil},
		{"empty name", []Field{{Name: "", Type: Int}}},
		{"duplicate", []Field{{Name: "a", Type: Int}, {Name: "a", Type: String}}},
		{"reserved id", []Field{{Name: "ID", Type: Int}}},
		{"reserved version", []Field{{Name: "version", Type: Int}}},
		{"reserved dunder", []Field{{Name: "__id__", Type: Int}}},
		{"bad char", []Field{{Name: "a b", Type: Int}}},
		{"digit first", []Field{{Name: "1a", Type: Int}}},
		{"no type", []Field{{Name: "a"}}},
		{"bad default", []Field{{Name: "a", Type: Int, Default: "x"}}},
		{"too long", []Field{{Name: strings.Repeat("a", 65), Type: Int}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Create(context.Background(), filepath.Join(dir, "x.db"), c.fields)
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("got %v, want ErrSchema", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("a refused schema left files: %v", ents)
			}
		})
	}
}

func TestInsertGetAllTypes(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	at := time.Date(2024, 2, 29, 12, 30, 0, 123456789, time.FixedZone("X", 3600))
	id := mustInsert(t, s, Values{"name": "x", "n": 42, "score": 2.5, "ok": true, "at": at, "blob": []byte{0, 1, 2}})
	r, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := Values{"name": "x", "n": int64(42), "score": 2.5, "ok": true, "at": at.UTC(), "blob": []byte{0, 1, 2}}
	for k, v := range want {
		if fmt.Sprint(r.Values[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %#v, want %#v", k, r.Values[k], v)
		}
	}
	if r.ID != id || r.Version != 1 {
		t.Errorf("id/version %d/%d", r.ID, r.Version)
	}
	// Defaults: n has 7, nullable fields are null, others zero.
	id2 := mustInsert(t, s, Values{})
	r2, _ := s.Get(ctx, id2)
	if r2.Values["n"] != int64(7) || r2.Values["at"] != nil || r2.Values["name"] != "" || r2.Values["ok"] != false {
		t.Errorf("defaults: %#v", r2.Values)
	}
	// Integer kinds and integral floats are accepted for int; JSON-style.
	for _, v := range []any{int8(1), uint16(2), int32(3), uint64(4), float64(5)} {
		if _, err := s.Insert(ctx, Values{"n": v}); err != nil {
			t.Errorf("n=%T: %v", v, err)
		}
	}
	if _, err := s.Get(ctx, 9999); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing id: %v", err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStore(t)
	id := mustInsert(t, s, Values{"name": "a"})
	rec, _ := s.Get(ctx, id)
	type wrongStruct struct {
		Name  string `msgpack:"name"`
		Extra int    `msgpack:"extra"`
	}
	cases := []struct {
		name string
		op   func() error
		want error
	}{
		{"wrong type string→int", func() error { _, err := s.Insert(ctx, Values{"n": "seven"}); return err }, ErrSchema},
		{"wrong type int→string", func() error { _, err := s.Insert(ctx, Values{"name": 5}); return err }, ErrSchema},
		{"fractional float→int", func() error { _, err := s.Insert(ctx, Values{"n": 1.5}); return err }, ErrSchema},
		{"unknown field", func() error { _, err := s.Insert(ctx, Values{"nope": 1}); return err }, ErrSchema},
		{"set id", func() error { _, err := s.Insert(ctx, Values{"id": 5}); return err }, ErrSchema},
		{"set version", func() error { _, err := s.Insert(ctx, Values{"Version": 5}); return err }, ErrSchema},
		{"null in non-nullable", func() error { _, err := s.Insert(ctx, Values{"name": nil}); return err }, ErrSchema},
		{"not a map or struct", func() error { _, err := s.Insert(ctx, 42); return err }, ErrSchema},
		{"struct with unknown field", func() error { _, err := s.Insert(ctx, wrongStruct{Name: "x"}); return err }, ErrSchema},
		{"update wrong type", func() error { _, err := s.Update(ctx, rec, Values{"ok": "yes"}); return err }, ErrSchema},
		{"update sets id", func() error { _, err := s.Update(ctx, rec, Values{"id": 9}); return err }, ErrSchema},
		{"update missing", func() error { _, err := s.Update(ctx, Record{ID: 999, Version: 1}, Values{"n": 1}); return err }, ErrNotFound},
		{"delete partly missing", func() error { _, err := s.Delete(ctx, id, 999); return err }, ErrNotFound},
		{"filter unknown field", func() error { _, err := s.Select(ctx, Query{Where: []Filter{Eq("nope", 1)}}); return err }, ErrSchema},
		{"filter wrong type", func() error { _, err := s.Select(ctx, Query{Where: []Filter{Gt("n", "x")}}); return err }, ErrSchema},
		{"prefix on int", func() error { _, err := s.Select(ctx, Query{Where: []Filter{Prefix("n", "1")}}); return err }, ErrSchema},
		{"sort unknown", func() error { _, err := s.Select(ctx, Query{OrderBy: []Order{Asc("zz")}}); return err }, ErrSchema},
		{"project unknown", func() error { _, err := s.Select(ctx, Query{Fields: []string{"zz"}}); return err }, ErrSchema},
		{"negative limit", func() error { _, err := s.Select(ctx, Query{Limit: -1}); return err }, ErrSchema},
		{"add duplicate field", func() error { return s.AddField(ctx, Field{Name: "n", Type: Int}, "") }, ErrSchema},
		{"add after unknown", func() error { return s.AddField(ctx, Field{Name: "q", Type: Int}, "zz") }, ErrSchema},
		{"drop unknown", func() error { return s.DropField(ctx, "zz") }, ErrSchema},
		{"default wrong type", func() error { return s.SetDefault(ctx, "n", "x") }, ErrSchema},
		{"unique index on dup", func() error {
			return s.Txn(ctx, func(tx *Tx) error {
				return errors.New("never") // placeholder replaced below
			})
		}, nil},
	}
	cases = cases[:len(cases)-1]
	before := fileHash(t, path)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.op()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Path != s.Path() || pe.Op == "" {
				t.Errorf("error does not name the store and operation: %v", err)
			}
			if fileHash(t, path) != before {
				t.Fatal("the refused call changed the file")
			}
		})
	}
}

func TestUpdateVersionConflict(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	id := mustInsert(t, s, Values{"name": "a", "n": 1})
	r1, _ := s.Get(ctx, id)
	r2, err := s.Update(ctx, r1, Values{"n": 2})
	if err != nil || r2.Version != 2 || r2.Values["n"] != int64(2) {
		t.Fatalf("update: %+v %v", r2, err)
	}
	// A second update from the stale copy is refused and changes nothing.
	if _, err := s.Update(ctx, r1, Values{"n": 3}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	got, _ := s.Get(ctx, id)
	if got.Values["n"] != int64(2) || got.Version != 2 || got.Values["name"] != "a" {
		t.Fatalf("after conflict: %+v", got)
	}
	// Read-modify-write by ID inside one transaction.
	err = s.Txn(ctx, func(tx *Tx) error {
		r, err := tx.Get(id)
		if err != nil {
			return err
		}
		_, err = tx.UpdateByID(id, Values{"n": r.Values["n"].(int64) + 10})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, id)
	if got.Values["n"] != int64(12) || got.Version != 3 {
		t.Fatalf("after txn: %+v", got)
	}
}

func TestDeleteAndIDsNeverReused(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	var ids []uint64
	for i := range 5 {
		ids = append(ids, mustInsert(t, s, Values{"n": i}))
	}
	if n, err := s.Delete(ctx, ids[3], ids[4]); err != nil || n != 2 {
		t.Fatalf("delete: %d %v", n, err)
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	id := mustInsert(t, s, Values{"n": 9})
	if id <= ids[4] {
		t.Fatalf("ID %d reused (max before was %d)", id, ids[4])
	}
	if n, _ := s.Len(ctx); n != 4 {
		t.Fatalf("len %d", n)
	}
}

func TestSelect(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := []Values{
		{"name": "apple", "n": 5, "score": 1.5, "ok": true, "at": at},
		{"name": "banana", "n": 3, "score": -2.0, "ok": false},
		{"name": "apricot", "n": 8, "score": 0.0, "ok": true, "at": at.Add(time.Hour)},
		{"name": "cherry", "n": 3, "score": 9.25, "ok": false, "blob": []byte("x")},
		{"name": "date", "n": -1, "score": 3.0, "ok": true},
	}
	for _, r := range rows {
		mustInsert(t, s, r)
	}
	names := func(recs []Record) string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Values["name"].(string))
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		name string
		q    Query
		want string
	}{
		{"all", Query{}, "apple,banana,apricot,cherry,date"},
		{"eq", Query{Where: []Filter{Eq("n", 3)}}, "banana,cherry"},
		{"ne", Query{Where: []Filter{Ne("n", 3)}}, "apple,apricot,date"},
		{"lt", Query{Where: []Filter{Lt("n", 3)}}, "date"},
		{"le", Query{Where: []Filter{Le("n", 3)}}, "banana,cherry,date"},
		{"gt", Query{Where: []Filter{Gt("score", 1.5)}}, "cherry,date"},
		{"ge", Query{Where: []Filter{Ge("score", 1.5)}}, "apple,cherry,date"},
		{"in", Query{Where: []Filter{In("name", "date", "apple", "zzz")}}, "apple,date"},
		{"prefix", Query{Where: []Filter{Prefix("name", "ap")}}, "apple,apricot"},
		{"is null", Query{Where: []Filter{IsNull("at")}}, "banana,cherry,date"},
		{"not null", Query{Where: []Filter{NotNull("at")}}, "apple,apricot"},
		{"eq nil is null", Query{Where: []Filter{Eq("blob", nil)}}, "apple,banana,apricot,date"},
		{"time range", Query{Where: []Filter{Gt("at", at)}}, "apricot"},
		{"bool", Query{Where: []Filter{Eq("ok", false)}}, "banana,cherry"},
		{"and", Query{Where: []Filter{Eq("ok", true), Gt("n", 0)}}, "apple,apricot"},
		{"predicate", Query{Match: func(r Record) bool { return len(r.Values["name"].(string)) == 6 }}, "banana,cherry"},
		{"sort asc, ties by id", Query{OrderBy: []Order{Asc("n")}}, "date,banana,cherry,apple,apricot"},
		{"sort desc", Query{OrderBy: []Order{Desc("score")}}, "cherry,date,apple,apricot,banana"},
		{"sort two keys", Query{OrderBy: []Order{Asc("ok"), Desc("n")}}, "banana,cherry,apricot,apple,date"},
		{"sort nulls first", Query{OrderBy: []Order{Asc("at")}, Limit: 2}, "banana,cherry"},
		{"limit", Query{Limit: 2}, "apple,banana"},
		{"offset", Query{Offset: 3}, "cherry,date"},
		{"sort limit offset", Query{OrderBy: []Order{Asc("name")}, Offset: 1, Limit: 2}, "apricot,banana"},
		{"offset past end", Query{Offset: 10, OrderBy: []Order{Asc("n")}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs, err := s.Select(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(recs); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
			for _, r := range recs {
				if r.ID == 0 || r.Version == 0 {
					t.Fatalf("record without ID/Version: %+v", r)
				}
			}
		})
	}
	recs, err := s.Select(ctx, Query{Fields: []string{"name"}, Where: []Filter{Eq("n", 5)}})
	if err != nil || len(recs) != 1 || len(recs[0].Values) != 1 || recs[0].Values["name"] != "apple" {
		t.Fatalf("projection: %+v %v", recs, err)
	}
	if n, err := s.Count(ctx, Eq("ok", true)); err != nil || n != 3 {
		t.Fatalf("count: %d %v", n, err)
	}
	var seen []uint64
	err = s.ForEach(ctx, func(r Record) error { seen = append(seen, r.ID); return nil })
	if err != nil || len(seen) != 5 || seen[0] != 1 || seen[4] != 5 {
		t.Fatalf("foreach: %v %v", seen, err)
	}
	stop := errors.New("stop")
	if err := s.ForEach(ctx, func(Record) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("foreach stop: %v", err)
	}
}

func TestTransactions(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	boom := errors.New("boom")
	// Rollback on error.
	err := s.Txn(ctx, func(tx *Tx) error {
		if _, err := tx.Insert(Values{"name": "gone"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("txn error: %v", err)
	}
	// Rollback on panic; the panic goes on, the lock is released.
	func() {
		defer func() {
			if p := recover(); p != "kaboom" {
				t.Fatalf("panic: %v", p)
			}
		}()
		_ = s.Txn(ctx, func(tx *Tx) error {
			_, _ = tx.Insert(Values{"name": "gone too"})
			panic("kaboom")
		})
	}()
	if n, _ := s.Len(ctx); n != 0 {
		t.Fatalf("rolled-back inserts are visible: %d", n)
	}
	// Commit of several operations together.
	err = s.Txn(ctx, func(tx *Tx) error {
		for i := range 3 {
			if _, err := tx.Insert(Values{"n": i}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// View is read-only.
	err = s.View(ctx, func(tx *Tx) error {
		_, err := tx.Insert(Values{"n": 1})
		return err
	})
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write in view: %v", err)
	}
	// Begin / Commit / Rollback.
	tx, err := s.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Insert(Values{"n": 100}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); !errors.Is(err, ErrTxDone) {
		t.Fatalf("rollback after commit: %v", err)
	}
	if _, err := tx.Get(1); !errors.Is(err, ErrTxDone) {
		t.Fatalf("use after commit: %v", err)
	}
	tx, _ = s.Begin(ctx, true)
	_, _ = tx.Insert(Values{"n": 200})
	_ = tx.Rollback()
	if n, _ := s.Len(ctx); n != 4 {
		t.Fatalf("len %d, want 4", n)
	}
	// A Begin'd transaction holds the lock: another handle waits, then
	// times out with ErrLockTimeout.
	tx, _ = s.Begin(ctx, true)
	other, err := Open(ctx, s.Path(), WithLockTimeout(50*time.Millisecond))
	if err == nil {
		t.Fatal("open while a writer holds the lock should wait and time out")
	}
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("got %v", err)
	}
	_ = tx.Rollback()
	other, err = Open(ctx, s.Path(), WithLockTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_ = other
}

func TestConcurrentGoroutines(t *testing.T) {
	// Many goroutines on one handle and on two handles of one path: every
	// increment inside Txn survives (the race detector watches too).
	ctx := context.Background()
	s, path := newTestStore(t)
	id := mustInsert(t, s, Values{"n": 0})
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const workers, each = 8, 10
	for w := range workers {
		h := s
		if w%2 == 1 {
			h = s2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := incrementInTxn(ctx, h, id); err != nil {
					t.Error(err)
				}
				if _, err := h.Get(ctx, id); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	r, _ := s.Get(ctx, id)
	if r.Values["n"] != int64(workers*each) {
		t.Fatalf("n = %v, want %d", r.Values["n"], workers*each)
	}
}

func TestSchemaChanges(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	old := mustInsert(t, s, Values{"name": "old", "n": 1})
	if err := s.AddField(ctx, Field{Name: "tag", Type: String, Default: "none"}, "name"); err != nil {
		t.Fatal(err)
	}
	fields, _ := s.Schema(ctx)
	if fields[1].Name != "tag" {
		t.Fatalf("tag not after name: %+v", fields)
	}
	r, _ := s.Get(ctx, old)
	if r.Values["tag"] != "none" {
		t.Fatalf("old record reads %v for the new field", r.Values["tag"])
	}
	// SetDefault persists and applies to records that never stored it.
	if err := s.SetDefault(ctx, "tag", "fresh"); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(ctx, s.Path())
	r, _ = s2.Get(ctx, old)
	if r.Values["tag"] != "fresh" {
		t.Fatalf("after SetDefault: %v", r.Values["tag"])
	}
	nid := mustInsert(t, s2, Values{"name": "new"})
	if r, _ := s2.Get(ctx, nid); r.Values["tag"] != "fresh" {
		t.Fatalf("insert after SetDefault: %v", r.Values["tag"])
	}
	// Drop then re-add a field of the same name: old values never come back.
	if _, err := s.Update(ctx, mustGet(t, s, old), Values{"tag": "secret"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DropField(ctx, "tag"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctx, Values{"tag": "x"}); !errors.Is(err, ErrSchema) {
		t.Fatalf("insert into dropped field: %v", err)
	}
	if err := s.AddField(ctx, Field{Name: "tag", Type: Int, Default: 3}, ""); err != nil {
		t.Fatal(err)
	}
	r = mustGet(t, s, old)
	if r.Values["tag"] != int64(3) {
		t.Fatalf("re-added field shows %#v, want the new default 3", r.Values["tag"])
	}
	if rep, err := s.Check(ctx); err != nil {
		t.Fatalf("check: %v %+v", err, rep)
	}
}

func mustGet(t testing.TB, s *Store, id uint64) Record {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCleanupReclaims(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStore(t)
	big := strings.Repeat("x", 2000)
	err := s.Txn(ctx, func(tx *Tx) error {
		for range 2000 {
			if _, err := tx.Insert(Values{"name": big}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keep := mustInsert(t, s, Values{"name": "keep"})
	err = s.Txn(ctx, func(tx *Tx) error {
		return tx.ForEach(func(r Record) error {
			if r.ID != keep {
				_, err := tx.Delete(r.ID)
				return err
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reclaimed <= 1<<20 || res.Records != 1 {
		t.Fatalf("cleanup reclaimed only %d bytes: %+v", res.Reclaimed, res)
	}
	if fi, _ := os.Stat(path); fi.Size() != res.After {
		t.Fatalf("size %d, report %d", fi.Size(), res.After)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("cleanup left its temporary file")
	}
	if r := mustGet(t, s, keep); r.Values["name"] != "keep" {
		t.Fatal("record lost in cleanup")
	}
	if _, err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

type job struct {
	ID      uint64    `msgpack:"id"`
	Version uint64    `msgpack:"version"`
	Name    string    `msgpack:"name"`
	N       int       `msgpack:"n"`
	At      time.Time `msgpack:"at"`
}

func TestStructs(t *testing.T) {
	ctx := context.Background()
	s, err := Create(ctx, filepath.Join(t.TempDir(), "s.db"), []Field{
		{Name: "name", Type: String}, {Name: "n", Type: Int}, {Name: "at", Type: Time},
	})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC)
	id, err := s.Insert(ctx, job{Name: "nightly", N: 3, At: at})
	if err != nil {
		t.Fatal(err)
	}
	var j job
	if err := mustGet(t, s, id).Decode(&j); err != nil {
		t.Fatal(err)
	}
	if j.ID != id || j.Version != 1 || j.Name != "nightly" || j.N != 3 || !j.At.Equal(at) {
		t.Fatalf("decoded %+v", j)
	}
	// A struct carrying a non-zero ID cannot set it.
	if _, err := s.Insert(ctx, j); !errors.Is(err, ErrSchema) {
		t.Fatalf("insert with id: %v", err)
	}
	// Schema still enforced for structs.
	type bad struct {
		Name int `msgpack:"name"`
	}
	if _, err := s.Insert(ctx, bad{Name: 1}); !errors.Is(err, ErrSchema) {
		t.Fatalf("struct with wrong type: %v", err)
	}
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	mustInsert(t, s, Values{})
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 1 || st.FileSize <= 0 || len(st.Schema) != len(testFields) || st.NextID != 2 || st.FormatVersion != FormatVersion || st.Created.IsZero() {
		t.Fatalf("stats %+v", st)
	}
}

func TestCancelledContext(t *testing.T) {
	s, path := newTestStore(t)
	before := fileHash(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Insert(ctx, Values{"name": "x"})
	if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if fileHash(t, path) != before {
		t.Fatal("cancelled insert changed the file")
	}
}

// TestNotAStore: files that are not psbase stores are refused with a clear
// error and left exactly as they were.
func TestNotAStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(i*7919 + i/13)
	}
	plainBolt := filepath.Join(dir, "plain.db")
	db, err := bolt.Open(plainBolt, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	_ = db.Close()

	s, good := newTestStore(t)
	for i := range 200 {
		mustInsert(t, s, Values{"name": strings.Repeat("y", 100), "n": i})
	}
	full, _ := os.ReadFile(good)
	truncated := write("truncated.db", full[:len(full)/3])
	halfPage := write("halfpage.db", full[:1000])

	cases := []struct {
		name string
		path string
		want error
	}{
		{"random bytes", write("random.db", random), ErrCorrupt},
		{"empty file (an interrupted Create: no store)", write("empty.db", nil), ErrNotExist},
		{"text file", write("text.db", []byte("hello, world\n")), ErrCorrupt},
		{"plain bbolt", plainBolt, ErrCorrupt},
		{"truncated store", truncated, ErrCorrupt},
		{"half a page", halfPage, ErrCorrupt},
		{"directory", dir, ErrNotExist},
		{"missing dir", filepath.Join(dir, "no", "such.db"), ErrNotExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := fileHash(t, c.path)
			st, err := Open(ctx, c.path)
			if err == nil {
				// Opening may succeed on a store damaged past its meta pages;
				// reading all of it must then fail cleanly.
				_, err = st.Check(ctx)
				if err == nil {
					_, err = st.Select(ctx, Query{})
				}
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if fileHash(t, c.path) != before {
				t.Fatal("the file was changed")
			}
		})
	}
}

// TestCorruptRecordDetected: a flipped byte inside a record is found by the
// CRC: Get returns ErrCorrupt naming the record, Check reports it.
func TestCorruptRecordDetected(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStore(t)
	mustInsert(t, s, Values{"name": "fine"})
	bad := mustInsert(t, s, Values{"name": "MARKER-to-be-flipped"})
	data, _ := os.ReadFile(path)
	i := bytes.Index(data, []byte("MARKER-to-be-flipped"))
	if i < 0 {
		t.Fatal("marker not found in the file")
	}
	data[i] ^= 0x20
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, bad)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("record %d", bad)) {
		t.Fatalf("get corrupt: %v", err)
	}
	rep, err := s.Check(ctx)
	if !errors.Is(err, ErrCorrupt) || len(rep.Problems) != 1 || rep.Problems[0].ID != bad {
		t.Fatalf("check: %v %+v", err, rep)
	}
	if _, err := s.Select(ctx, Query{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("select over corrupt record: %v", err)
	}
}

func TestLazyOpen(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStore(t)
	id := mustInsert(t, s, Values{"name": "a"})
	lazy, err := Open(ctx, path, WithLazyOpen())
	if err != nil {
		t.Fatal(err)
	}
	if r, err := lazy.Get(ctx, id); err != nil || r.Values["name"] != "a" {
		t.Fatalf("lazy get: %v %v", r, err)
	}
	// Not a store: Open succeeds lazily, the first operation says ErrCorrupt.
	junk := filepath.Join(t.TempDir(), "junk.db")
	_ = os.WriteFile(junk, []byte("not a store at all, just some text"), 0o644)
	j, err := Open(ctx, junk, WithLazyOpen())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Len(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("first op on junk: %v", err)
	}
	// A missing path is still ErrNotExist at Open.
	if _, err := Open(ctx, junk+".missing", WithLazyOpen()); !errors.Is(err, ErrNotExist) {
		t.Fatalf("lazy open of a missing store: %v", err)
	}
}

// TestContextHonoredWithLock: once the lock is held, a walk notices its
// context within ctxCheckEvery records, returns an error wrapping the
// context's, keeps no write and releases the lock; a Txn whose context
// ends is rolled back even if its body returns nil. The negative control
// ignores the context: the walk goes to the end.
func TestContextHonoredWithLock(t *testing.T) {
	const records = 5000
	s, _ := newTestStore(t)
	bg := context.Background()
	err := s.Txn(bg, func(tx *Tx) error {
		for i := range records {
			if _, err := tx.Insert(Values{"name": fmt.Sprintf("r%d", i), "n": i}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ignore := range []bool{false, true} {
		s.cfg.weak.ignoreCtx = ignore
		ctx, cancel := context.WithCancel(bg)
		seen := 0
		err := s.ForEach(ctx, func(Record) error {
			if seen++; seen == 10 {
				cancel()
			}
			return nil
		})
		cancel()
		if ignore {
			if seen != records || err != nil {
				t.Fatalf("negative control: with the context ignored ForEach saw %d of %d (%v): the test proves nothing", seen, records, err)
			}
			continue
		}
		if !errors.Is(err, context.Canceled) || seen > 10+ctxCheckEvery {
			t.Fatalf("ForEach cancelled at record 10: %v after %d records", err, seen)
		}
	}
	s.cfg.weak.ignoreCtx = false

	ctx, cancel := context.WithCancel(bg)
	matched := 0
	_, err = s.Select(ctx, Query{Match: func(Record) bool {
		if matched++; matched == 10 {
			cancel()
		}
		return true
	}})
	cancel()
	if !errors.Is(err, context.Canceled) || matched > 10+ctxCheckEvery {
		t.Fatalf("Select cancelled at record 10: %v after %d records", err, matched)
	}

	// A Txn: a write after the cancel fails; a body that returns nil
	// anyway is not committed.
	for _, bodyIgnores := range []bool{false, true} {
		ctx, cancel := context.WithCancel(bg)
		err := s.Txn(ctx, func(tx *Tx) error {
			if _, err := tx.Insert(Values{"name": "lost"}); err != nil {
				return err
			}
			cancel()
			_, err := tx.Insert(Values{"name": "after"})
			if bodyIgnores {
				return nil
			}
			return err
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Txn cancelled in its body (body ignores it: %v): %v", bodyIgnores, err)
		}
	}
	if n, _ := s.Len(bg); n != records {
		t.Errorf("%d records after cancelled Txns, want %d (nothing of them kept)", n, records)
	}

	// CreateIndex: cancelled from its progress callback, nothing built.
	ctx, cancel = context.WithCancel(bg)
	err = s.CreateIndex(ctx, "name", IndexProgress(func(done, total int) { cancel() }))
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("CreateIndex cancelled: %v", err)
	}
	if fields, _ := s.Schema(bg); fields[0].Indexed {
		t.Error("a cancelled CreateIndex left an index")
	}
	// The lock was released every time.
	if _, err := s.Insert(bg, Values{"name": "after all"}); err != nil {
		t.Errorf("insert after the cancellations: %v", err)
	}
}

// TestErrorDetails: a refused unique value and a stale version come as
// *DuplicateError and *ConflictError (errors.As), still matching their
// sentinels, through group commit too; ErrNotExist matches fs.ErrNotExist;
// an option Open cannot use is ErrOption.
func TestErrorDetails(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	if err := s.CreateIndex(ctx, "name", Unique()); err != nil {
		t.Fatal(err)
	}
	id := mustInsert(t, s, Values{"name": "taken"})
	for range 2 { // the second travels through the group-commit queue where there is one
		_, err := s.Insert(ctx, Values{"name": "taken"})
		var de *DuplicateError
		if !errors.As(err, &de) || !errors.Is(err, ErrDuplicate) || de.Field != "name" || de.Value != "taken" || de.ExistingID != id {
			t.Errorf("duplicate: %v (%+v)", err, de)
		}
		_, err = s.Update(ctx, Record{ID: id, Version: 7}, Values{"n": 1})
		var ce *ConflictError
		if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) || ce.ID != id || ce.Have != 7 || ce.Want != 1 {
			t.Errorf("conflict: %v (%+v)", err, ce)
		}
	}
	_, err := Open(ctx, filepath.Join(filepath.Dir(db), "none.db"))
	if !errors.Is(err, ErrNotExist) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing store: %v, want ErrNotExist matching fs.ErrNotExist", err)
	}
	if _, err := Open(ctx, db, WithOverwrite()); !errors.Is(err, ErrOption) {
		t.Errorf("Open(WithOverwrite): %v, want ErrOption", err)
	}
}

// TestBackupAndRestore: a backup taken while another handle writes is a
// sound store holding exactly the records committed before it; a cancelled
// backup leaves nothing; Restore puts a backup back (a warm reader sees it)
// and refuses a damaged one, changing nothing.
func TestBackupAndRestore(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	defer s.Close()
	for i := range 300 {
		mustInsert(t, s, Values{"name": fmt.Sprintf("r%d", i), "n": i})
	}
	w, _ := Open(ctx, db)
	defer w.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			w.Insert(ctx, Values{"name": "more", "n": i})
		}
	}()
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "copy.db")
	if _, err := s.BackupFile(ctx, copyPath); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	c, err := Open(ctx, copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := c.Check(ctx); err != nil || !rep.OK() || rep.Records < 300 {
		t.Fatalf("the backup: %v %v (%d records)", err, rep.Problems, rep.Records)
	}
	n, _ := c.Len(ctx)
	c.Close()
	if _, err := s.BackupFile(ctx, copyPath); !errors.Is(err, ErrExists) {
		t.Errorf("backup over an existing file: %v, want ErrExists", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.BackupFile(cctx, filepath.Join(dir, "cancelled.db")); err == nil {
		t.Error("a cancelled backup succeeded")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "cancelled.db*")); len(m) != 0 {
		t.Errorf("a cancelled backup left %v", m)
	}
	// Restore: a warm reader of the store sees the restored records.
	if _, err := s.Len(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(ctx, copyPath); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Len(ctx); got != n {
		t.Errorf("after Restore: %d records, want the backup's %d", got, n)
	}
	raw, _ := os.ReadFile(copyPath)
	os.WriteFile(copyPath, bytes.ReplaceAll(raw, []byte("records"), []byte("RECORDS")), 0o644)
	before := fileHash(t, db)
	if err := s.Restore(ctx, copyPath); !errors.Is(err, ErrCorrupt) {
		t.Errorf("restore from a damaged backup: %v, want ErrCorrupt", err)
	}
	if fileHash(t, db) != before {
		t.Error("a refused restore changed the store")
	}
}

// TestIterators: Tx.All yields what Select returns (streamed or sorted),
// stops when the loop breaks; Store.Scan yields every matching record in ID
// order across pages, with Offset and Limit over the whole stream, and
// holds no lock between pages (a write from inside the loop goes through,
// and a record it adds ahead of the loop appears).
func TestIterators(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	const total = 3*ScanPage + 17
	err := s.Txn(ctx, func(tx *Tx) error {
		for i := range total {
			if _, err := tx.Insert(Values{"name": fmt.Sprintf("r%d", i), "n": i % 10}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(recs []Record) []uint64 {
		var out []uint64
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, q := range []Query{
		{Where: []Filter{Eq("n", 3)}},
		{Where: []Filter{Ge("n", 5)}, Offset: 7, Limit: 40},
		{OrderBy: []Order{Desc("n")}, Limit: 30},
	} {
		want, err := s.Select(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var got []Record
		err = s.View(ctx, func(tx *Tx) error {
			for r, err := range tx.All(q) {
				if err != nil {
					return err
				}
				got = append(got, r)
			}
			return nil
		})
		if err != nil || !slices.Equal(ids(got), ids(want)) {
			t.Errorf("Tx.All(%+v): %d records %v, Select %d", q, len(got), err, len(want))
		}
		if len(q.OrderBy) > 0 {
			continue
		}
		got = got[:0]
		for r, err := range s.Scan(ctx, q) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		if !slices.Equal(ids(got), ids(want)) {
			t.Errorf("Scan(%+v): %d records, Select %d", q, len(got), len(want))
		}
	}
	// Breaking out early.
	n := 0
	for range s.Scan(ctx, Query{}) {
		if n++; n == 10 {
			break
		}
	}
	if n != 10 {
		t.Errorf("break after 10: %d", n)
	}
	// No lock between pages: another handle writes from inside the loop.
	w, err := Open(ctx, db, WithLockTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	seen, added := 0, uint64(0)
	var lastID uint64
	for r, err := range s.Scan(ctx, Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.ID <= lastID {
			t.Fatalf("Scan went back: %d after %d", r.ID, lastID)
		}
		lastID = r.ID
		if seen++; seen == ScanPage+5 {
			if added, err = w.Insert(ctx, Values{"name": "added during the scan"}); err != nil {
				t.Fatalf("a write from inside the Scan loop: %v (a lock held across pages?)", err)
			}
		}
	}
	if seen != total+1 || lastID != added {
		t.Errorf("Scan saw %d records ending at %d; want %d ending at the one added (%d)", seen, lastID, total+1, added)
	}
	for _, err := range s.Scan(ctx, Query{OrderBy: []Order{Asc("n")}}) {
		if !errors.Is(err, ErrSchema) {
			t.Errorf("Scan with OrderBy: %v, want ErrSchema", err)
		}
	}
}

// ctxKey carries a trace id in TestLogContext.
type ctxKey struct{}

// ctxHandler records the trace id of every record's context.
type ctxHandler struct {
	mu  sync.Mutex
	ids []any
}

func (h *ctxHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, ctx.Value(ctxKey{}))
	return nil
}
func (h *ctxHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *ctxHandler) WithGroup(string) slog.Handler      { return h }

// TestLogContext: the store logs with the caller's context, so a handler
// sees its values (trace ids).
func TestLogContext(t *testing.T) {
	h := &ctxHandler{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "trace-42")
	s, err := Create(ctx, filepath.Join(t.TempDir(), "l.db"), testFields, WithLogger(slog.New(h)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ids) < 2 {
		t.Fatalf("%d log records", len(h.ids))
	}
	for i, id := range h.ids {
		if id != "trace-42" {
			t.Errorf("log record %d had context value %v, want the caller's trace-42", i, id)
		}
	}
}

// TestBetweenOneFilter: Between is one Filter, the same as Ge and Le
// together, through an index as well; a malformed one is ErrSchema.
func TestBetweenOneFilter(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	for i := range 50 {
		mustInsert(t, s, Values{"name": fmt.Sprintf("r%d", i), "n": i})
	}
	for _, indexed := range []bool{false, true} {
		if indexed {
			if err := s.CreateIndex(ctx, "n"); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Select(ctx, Query{Where: []Filter{Between("n", 10, 14)}})
		want, _ := s.Select(ctx, Query{Where: []Filter{Ge("n", 10), Le("n", 14)}})
		if err != nil || len(got) != 5 || len(want) != 5 {
			t.Errorf("Between(10, 14), indexed %v: %d records %v (Ge+Le: %d)", indexed, len(got), err, len(want))
		}
	}
	if _, err := s.Select(ctx, Query{Where: []Filter{{Field: "n", Op: OpBetween, Values: []any{1}}}}); !errors.Is(err, ErrSchema) {
		t.Errorf("a between with one value: %v, want ErrSchema", err)
	}
}

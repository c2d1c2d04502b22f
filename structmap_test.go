package psbase

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The naming rule: psbase tag, then msgpack, then json, then the Go name,
// matched exactly and then without regard to case.
func TestStructMappingNamingRule(t *testing.T) {
	ctx := context.Background()
	s, err := Create(ctx, filepath.Join(t.TempDir(), "s.db"), []Field{
		{Name: "name", Type: String}, {Name: "runs", Type: Int}, {Name: "owner", Type: String, Nullable: true},
		{Name: "at", Type: Time, Nullable: true}, {Name: "blob", Type: Bytes, Nullable: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Untagged: Go names, folded to the schema's.
	type plain struct {
		ID   uint64
		Name string
		Runs int32
	}
	id, err := s.Insert(ctx, plain{Name: "a", Runs: 3})
	if err != nil {
		t.Fatalf("insert untagged struct: %v", err)
	}
	var p plain
	if err := mustGet(t, s, id).Decode(&p); err != nil || p != (plain{ID: id, Name: "a", Runs: 3}) {
		t.Fatalf("decode untagged: %+v %v", p, err)
	}

	// json tags only.
	type jsonTagged struct {
		Key   uint64  `json:"id"`
		Title string  `json:"name"`
		Count int     `json:"runs,omitempty"`
		Who   *string `json:"owner"`
	}
	who := "ops"
	id, err = s.Insert(ctx, &jsonTagged{Title: "b", Count: 4, Who: &who})
	if err != nil {
		t.Fatalf("insert json-tagged struct: %v", err)
	}
	var j jsonTagged
	if err := mustGet(t, s, id).Decode(&j); err != nil || j.Key != id || j.Title != "b" || j.Count != 4 || j.Who == nil || *j.Who != "ops" {
		t.Fatalf("decode json-tagged: %+v %v", j, err)
	}

	// psbase beats msgpack beats json; "-" leaves a field out.
	type layered struct {
		A    string `psbase:"name" msgpack:"owner" json:"runs"`
		B    int    `msgpack:"runs" json:"name"`
		Skip string `psbase:"-" json:"owner"`
	}
	id, err = s.Insert(ctx, layered{A: "c", B: 5, Skip: "never"})
	if err != nil {
		t.Fatalf("insert layered: %v", err)
	}
	rec := mustGet(t, s, id)
	if rec.Values["name"] != "c" || rec.Values["runs"] != int64(5) || rec.Values["owner"] != nil {
		t.Fatalf("layered stored %v", rec.Values)
	}

	// Embedded structs flatten; a nil embedded pointer contributes nothing
	// and is allocated by Decode; the outer field hides the inner one.
	type Times struct {
		At   *time.Time
		Name string // hidden by outer.Name
	}
	type outer struct {
		*Times
		Name string
		Blob []byte
	}
	id, err = s.Insert(ctx, outer{Name: "d", Blob: []byte{1, 2}})
	if err != nil {
		t.Fatalf("insert embedded (nil): %v", err)
	}
	at := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	id2, err := s.Insert(ctx, outer{Times: &Times{At: &at}, Name: "e"})
	if err != nil {
		t.Fatalf("insert embedded: %v", err)
	}
	var o outer
	if err := mustGet(t, s, id).Decode(&o); err != nil || o.Name != "d" || string(o.Blob) != "\x01\x02" || o.Times == nil || o.At != nil {
		t.Fatalf("decode embedded: %+v %v", o, err)
	}
	o = outer{}
	if err := mustGet(t, s, id2).Decode(&o); err != nil || o.At == nil || !o.At.Equal(at) || o.Times.Name != "" {
		t.Fatalf("decode embedded 2: %+v %v", o, err)
	}
}

// Decode never succeeds silently into nothing, and never stores a value that
// does not fit.
func TestStructMappingErrors(t *testing.T) {
	ctx := context.Background()
	s, err := Create(ctx, filepath.Join(t.TempDir(), "s.db"), []Field{{Name: "name", Type: String}, {Name: "n", Type: Int}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, err := s.Insert(ctx, Values{"name": "x", "n": int64(300)})
	if err != nil {
		t.Fatal(err)
	}
	rec := mustGet(t, s, id)

	type unrelated struct {
		ID    uint64
		Title string
	}
	var u unrelated
	if err := rec.Decode(&u); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "no field") {
		t.Fatalf("decode into a struct matching nothing: %v (%+v)", err, u)
	}
	type small struct {
		N int8
	}
	if err := rec.Decode(&small{}); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "overflows") {
		t.Fatalf("decode 300 into int8: %v", err)
	}
	type wrong struct {
		Name bool
	}
	if err := rec.Decode(&wrong{}); !errors.Is(err, ErrSchema) {
		t.Fatalf("decode string into bool: %v", err)
	}
	if err := rec.Decode(unrelated{}); !errors.Is(err, ErrSchema) {
		t.Fatalf("decode into a non-pointer: %v", err)
	}
	var n int
	if err := rec.Decode(&n); !errors.Is(err, ErrSchema) {
		t.Fatalf("decode into *int: %v", err)
	}
	type clash struct {
		A string `json:"name"`
		B string `psbase:"NAME"`
	}
	if _, err := s.Insert(ctx, clash{A: "a"}); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "both map") {
		t.Fatalf("insert of a struct with two fields for one name: %v", err)
	}
	if err := rec.Decode(&clash{}); !errors.Is(err, ErrSchema) {
		t.Fatalf("decode into a clashing struct: %v", err)
	}
	// An untagged field that names nothing in the schema is refused on
	// Insert, as a map key would be, and nothing is written.
	type extra struct {
		Name  string
		Color string
	}
	if _, err := s.Insert(ctx, extra{Name: "y", Color: "red"}); !errors.Is(err, ErrSchema) {
		t.Fatalf("insert with an unknown field: %v", err)
	}
	if n, _ := s.Len(ctx); n != 1 {
		t.Fatalf("failed inserts wrote: %d records", n)
	}
	// A projection leaves the struct's other fields as they were.
	recs, err := s.Select(ctx, Query{Fields: []string{"n"}})
	if err != nil {
		t.Fatal(err)
	}
	type both struct {
		Name string
		N    int
	}
	b := both{Name: "kept"}
	if err := recs[0].Decode(&b); err != nil || b.Name != "kept" || b.N != 300 {
		t.Fatalf("decode projection: %+v %v", b, err)
	}
}

package psbase

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

type tableJob struct {
	ID      uint64
	Version uint64
	Name    string     `psbase:"name,unique"`
	Owner   *string    `json:"owner"`
	Runs    uint32     `psbase:"runs,index"`
	Score   float32    `msgpack:"score"`
	Done    bool       `psbase:"done"`
	At      *time.Time `psbase:"at"`
	Blob    []byte     `psbase:"blob,nullable"`
	Scratch string     `psbase:"-"`
}

func TestFieldsOf(t *testing.T) {
	got, err := FieldsOf[tableJob]()
	if err != nil {
		t.Fatal(err)
	}
	want := []Field{
		{Name: "name", Type: String, Indexed: true, Unique: true},
		{Name: "owner", Type: String, Nullable: true},
		{Name: "runs", Type: Int, Indexed: true},
		{Name: "score", Type: Float},
		{Name: "done", Type: Bool},
		{Name: "at", Type: Time, Nullable: true},
		{Name: "blob", Type: Bytes, Nullable: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FieldsOf:\n got %+v\nwant %+v", got, want)
	}
	if _, err := FieldsOf[struct{ C chan int }](); !errors.Is(err, ErrSchema) {
		t.Fatalf("FieldsOf with a chan field: %v", err)
	}
	if _, err := FieldsOf[int](); !errors.Is(err, ErrSchema) {
		t.Fatalf("FieldsOf[int]: %v", err)
	}
	if _, err := FieldsOf[struct{ ID uint64 }](); !errors.Is(err, ErrSchema) {
		t.Fatalf("FieldsOf of a struct with only an ID: %v", err)
	}
}

func TestTableOf(t *testing.T) {
	ctx := context.Background()
	fields, err := FieldsOf[tableJob]()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Create(ctx, filepath.Join(t.TempDir(), "t.db"), fields)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	jobs, err := TableOf[tableJob](ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	owner := "ops"
	at := time.Date(2032, 3, 4, 5, 6, 7, 0, time.UTC)
	id, err := jobs.Insert(ctx, tableJob{Name: "backup", Owner: &owner, Runs: 2, Score: 1.5, At: &at, Blob: []byte("x"), Scratch: "never stored"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := jobs.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != id || j.Version != 1 || j.Name != "backup" || *j.Owner != "ops" || j.Runs != 2 || j.Score != 1.5 || !j.At.Equal(at) || string(j.Blob) != "x" || j.Scratch != "" {
		t.Fatalf("Get: %+v", j)
	}
	if _, err := jobs.Insert(ctx, tableJob{Name: "backup"}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("unique tag: %v", err)
	}
	// A versioned update: the decoded struct's Version is the condition.
	j.Runs = 3
	j2, err := jobs.Update(ctx, id, j)
	if err != nil || j2.Version != 2 || j2.Runs != 3 {
		t.Fatalf("Update: %+v %v", j2, err)
	}
	j.Runs = 4 // j still says version 1
	if _, err := jobs.Update(ctx, id, j); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale Update: %v", err)
	}
	if _, err := jobs.Update(ctx, id+1, j2); !errors.Is(err, ErrSchema) {
		t.Fatalf("Update with another record's ID: %v", err)
	}
	j2.Version = 0 // unconditional
	j2.Runs = 5
	if j3, err := jobs.Update(ctx, id, j2); err != nil || j3.Runs != 5 || j3.Version != 3 {
		t.Fatalf("unconditional Update: %+v %v", j3, err)
	}
	if _, ins, err := jobs.Upsert(ctx, "name", tableJob{Name: "report", Runs: 1}); err != nil || !ins {
		t.Fatalf("Upsert: %v %v", ins, err)
	}
	if r, err := jobs.GetBy(ctx, "name", "report"); err != nil || r.Runs != 1 {
		t.Fatalf("GetBy: %+v %v", r, err)
	}
	all, err := jobs.Select(ctx, Query{Where: []Filter{Ge("runs", 1)}, OrderBy: []Order{{Field: "runs"}}})
	if err != nil || len(all) != 2 || all[0].Name != "report" || all[1].Name != "backup" {
		t.Fatalf("Select: %+v %v", all, err)
	}
	var names []string
	for j, err := range jobs.Scan(ctx, Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, j.Name)
	}
	if !reflect.DeepEqual(names, []string{"backup", "report"}) {
		t.Fatalf("Scan: %v", names)
	}
	err = s.View(ctx, func(tx *Tx) error {
		n := 0
		for j, err := range jobs.All(tx, Query{Where: []Filter{Eq("name", "report")}}) {
			if err != nil {
				return err
			}
			if j.Name != "report" {
				t.Errorf("All: %+v", j)
			}
			n++
		}
		if n != 1 {
			t.Errorf("All: %d records", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := jobs.Delete(ctx, id); err != nil || n != 1 {
		t.Fatalf("Delete: %d %v", n, err)
	}
	if _, err := jobs.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}

	// A typed table's writes are Values in the schema's spelling, so they
	// travel through group commit as data.
	type spelled struct {
		NAME string
		Runs int
	}
	sp, err := TableOf[spelled](ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if vals, err := sp.values(spelled{NAME: "n", Runs: 1}); err != nil || len(vals) != 2 || vals["name"] != "n" || vals["runs"] != 1 {
		t.Fatalf("values: %v %v", vals, err)
	}
	if _, ok := gcValues(Values{"name": "n"}); !ok {
		t.Fatal("Values do not travel as data")
	}

	// A struct naming a field the store does not have is refused up front.
	type other struct {
		Name  string
		Color string
	}
	if _, err := TableOf[other](ctx, s); !errors.Is(err, ErrSchema) {
		t.Fatalf("TableOf a mismatched struct: %v", err)
	}
	if _, err := TableOf[*tableJob](ctx, s); !errors.Is(err, ErrSchema) {
		t.Fatalf("TableOf a pointer type: %v", err)
	}
}

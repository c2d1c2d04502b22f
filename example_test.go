package psbase_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/psbase/psbase"
)

// tempPath returns a store path in a fresh temporary directory.
func tempPath() (string, func()) {
	dir, err := os.MkdirTemp("", "psbase-example")
	if err != nil {
		log.Fatal(err)
	}
	return filepath.Join(dir, "jobs.db"), func() { os.RemoveAll(dir) }
}

func ExampleCreate() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()

	s, err := psbase.Create(ctx, path, []psbase.Field{
		{Name: "name", Type: psbase.String, Unique: true},
		{Name: "runs", Type: psbase.Int},
		{Name: "status", Type: psbase.String, Default: "new"},
	})
	if err != nil {
		log.Fatal(err)
	}
	id, err := s.Insert(ctx, psbase.Values{"name": "nightly-backup"})
	if err != nil {
		log.Fatal(err)
	}
	rec, err := s.Get(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.ID, rec.Version, rec.Values["name"], rec.Values["runs"], rec.Values["status"])
	// Output: 1 1 nightly-backup 0 new
}

func ExampleStore_Select() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	s, _ := psbase.Create(ctx, path, []psbase.Field{{Name: "name", Type: psbase.String}, {Name: "runs", Type: psbase.Int}})
	for i, name := range []string{"backup", "report", "rotate", "reindex"} {
		_, _ = s.Insert(ctx, psbase.Values{"name": name, "runs": i * 10})
	}
	recs, err := s.Select(ctx, psbase.Query{
		Where:   []psbase.Filter{psbase.Prefix("name", "re"), psbase.Ge("runs", 10)},
		OrderBy: []psbase.Order{psbase.Desc("runs")},
		Limit:   2,
		Fields:  []string{"name"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range recs {
		fmt.Println(r.ID, r.Values["name"])
	}
	// Output:
	// 4 reindex
	// 2 report
}

// Update refuses a stale record: read, change, write from separate calls is
// safe because a concurrent change in between turns into ErrConflict.
func ExampleStore_Update() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	s, _ := psbase.Create(ctx, path, []psbase.Field{{Name: "runs", Type: psbase.Int}})
	id, _ := s.Insert(ctx, psbase.Values{"runs": 0})

	mine, _ := s.Get(ctx, id)
	theirs, _ := s.Get(ctx, id)
	if _, err := s.Update(ctx, theirs, psbase.Values{"runs": 1}); err != nil {
		log.Fatal(err)
	}
	_, err := s.Update(ctx, mine, psbase.Values{"runs": 1})
	fmt.Println(errors.Is(err, psbase.ErrConflict))

	// Retry from a fresh read.
	mine, _ = s.Get(ctx, id)
	updated, _ := s.Update(ctx, mine, psbase.Values{"runs": mine.Values["runs"].(int64) + 1})
	fmt.Println(updated.Version, updated.Values["runs"])
	// Output:
	// true
	// 3 2
}

// A read-modify-write inside Txn is atomic across processes: this is the
// increment that 50 cron jobs can run at once without losing one.
func ExampleStore_Txn() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	s, _ := psbase.Create(ctx, path, []psbase.Field{{Name: "counter", Type: psbase.Int}})
	id, _ := s.Insert(ctx, psbase.Values{})

	for range 3 {
		err := s.Txn(ctx, func(tx *psbase.Tx) error {
			rec, err := tx.Get(id)
			if err != nil {
				return err
			}
			_, err = tx.UpdateByID(id, psbase.Values{"counter": rec.Values["counter"].(int64) + 1})
			return err
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	rec, _ := s.Get(ctx, id)
	fmt.Println(rec.Values["counter"], rec.Version)
	// Output: 3 4
}

// Begin holds the lock until Commit or Rollback, like database/sql's Tx.
func ExampleStore_Begin() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	s, _ := psbase.Create(ctx, path, []psbase.Field{{Name: "name", Type: psbase.String}})

	tx, err := s.Begin(ctx, true)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() // a no-op after Commit
	_, _ = tx.Insert(psbase.Values{"name": "a"})
	_, _ = tx.Insert(psbase.Values{"name": "b"})
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
	n, _ := s.Len(ctx)
	fmt.Println(n)
	// Output: 2
}

// Upsert by a unique key: the cure for two importers that both see "no row
// with external_id=1" and both insert.
func ExampleStore_Upsert() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	s, _ := psbase.Create(ctx, path, []psbase.Field{
		{Name: "external_id", Type: psbase.Int, Unique: true},
		{Name: "name", Type: psbase.String},
	})
	id1, inserted1, _ := s.Upsert(ctx, "external_id", psbase.Values{"external_id": 1, "name": "account1"})
	id2, inserted2, _ := s.Upsert(ctx, "external_id", psbase.Values{"external_id": 1, "name": "renamed"})
	rec, _ := s.GetBy(ctx, "external_id", 1)
	fmt.Println(id1 == id2, inserted1, inserted2, rec.Values["name"])

	_, err := s.Insert(ctx, psbase.Values{"external_id": 1})
	fmt.Println(errors.Is(err, psbase.ErrDuplicate))
	// Output:
	// true true false renamed
	// true
}

// Store your own structs: msgpack tags name the fields; "id" and "version"
// receive the record's ID and Version.
func ExampleRecord_Decode() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	type Job struct {
		ID   uint64 `msgpack:"id"`
		Name string `msgpack:"name"`
		Runs int    `msgpack:"runs"`
	}
	s, _ := psbase.Create(ctx, path, []psbase.Field{{Name: "name", Type: psbase.String}, {Name: "runs", Type: psbase.Int}})
	id, _ := s.Insert(ctx, Job{Name: "backup", Runs: 2})
	rec, _ := s.Get(ctx, id)
	var j Job
	if err := rec.Decode(&j); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", j)
	// Output: {ID:1 Name:backup Runs:2}
}

// Scan streams a large result in ID order, a page at a time under short
// shared locks, so a long loop never holds writers up; Tx.All iterates
// inside a transaction.
func ExampleStore_Scan() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	s, _ := psbase.Create(ctx, path, []psbase.Field{{Name: "n", Type: psbase.Int}})
	_ = s.Txn(ctx, func(tx *psbase.Tx) error {
		for i := 1; i <= 2000; i++ {
			if _, err := tx.Insert(psbase.Values{"n": i}); err != nil {
				return err
			}
		}
		return nil
	})
	sum := int64(0)
	for rec, err := range s.Scan(ctx, psbase.Query{Where: []psbase.Filter{psbase.Gt("n", 1990)}}) {
		if err != nil {
			log.Fatal(err)
		}
		sum += rec.Values["n"].(int64)
	}
	fmt.Println("sum of n > 1990:", sum)
	_ = s.View(ctx, func(tx *psbase.Tx) error {
		for rec, err := range tx.All(psbase.Query{OrderBy: []psbase.Order{psbase.Desc("n")}, Limit: 2}) {
			if err != nil {
				return err
			}
			fmt.Println(rec.ID, rec.Values["n"])
		}
		return nil
	})
	// Output:
	// sum of n > 1990: 19955
	// 2000 2000
	// 1999 1999
}

// A typed table: the schema comes from a struct, records go in and come out
// as that struct. Tags name fields (psbase, then msgpack, then json, then
// the Go name) and ask for indexes.
func ExampleTableOf() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	type Job struct {
		ID      uint64
		Version uint64
		Name    string `psbase:"name,unique"`
		Runs    int    `psbase:"runs"`
		Owner   *string
	}
	fields, err := psbase.FieldsOf[Job]()
	if err != nil {
		log.Fatal(err)
	}
	s, err := psbase.Create(ctx, path, fields)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	jobs, err := psbase.TableOf[Job](ctx, s)
	if err != nil {
		log.Fatal(err)
	}
	id, _ := jobs.Insert(ctx, Job{Name: "backup", Runs: 1})
	j, _ := jobs.Get(ctx, id)
	j.Runs++
	j, _ = jobs.Update(ctx, id, j) // conditional on j.Version
	fmt.Printf("%d %s runs=%d version=%d owner=%v\n", j.ID, j.Name, j.Runs, j.Version, j.Owner)
	// Output: 1 backup runs=2 version=2 owner=<nil>
}

// Metrics are counters of one handle, read without a lock; export them to
// expvar with expvar.Publish("psbase", expvar.Func(func() any { return
// s.Metrics() })), or to Prometheus from a Collector. WithObserver sees each
// operation as it ends.
func ExampleStore_Metrics() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	slow := 0
	s, _ := psbase.Create(ctx, path, []psbase.Field{{Name: "n", Type: psbase.Int}},
		psbase.WithObserver(func(ctx context.Context, e psbase.Event) {
			if e.Wait > time.Second {
				slow++ // or: log it, with the trace ID ctx carries
			}
		}))
	defer s.Close()
	id, _ := s.Insert(ctx, psbase.Values{"n": 1})
	_, _ = s.Get(ctx, id)
	_, err := s.Get(ctx, id+1)
	m := s.Metrics()
	fmt.Println(errors.Is(err, psbase.ErrNotFound), m.Ops["insert"].Count, m.Ops["get"].Count, m.Errors["ErrNotFound"], slow)
	// Output: true 1 2 1 0
}

// Buzhug: "Locking Buzhug", fifty processes that each read and write.
//
// Seed 004 keeps a single table in Buzhug, a pure-Python embedded database.
// A few times a day the application runs up to 50 times at once, in separate
// processes, and each run makes a read and a write or delete: the concurrent
// writes corrupt the database. The fix was to wrap every Buzhug method in a
// cross-process file lock, and "all the errors have vanished".
//
// psbase is that fix built in: every method takes the store's lock around
// its own open of the file. Here 50 processes, released at the same instant
// by the storm package, each read the table and then insert, update or
// delete, Buzhug style: Select to read, Insert, Update with the record's
// Version (Buzhug's __version__; a stale version is ErrConflict, and the
// process reads again and retries), Delete (a record someone else deleted
// first is ErrNotFound). Afterwards s.Check verifies the whole file, and the
// table must agree with what the processes say they did: every record that
// was not deleted is there, its Version is 1 + the updates acknowledged on
// it, and its "visits" counter equals those updates (no update lost).
//
// Between its read and its write a process "thinks" for -think, as an
// application deciding what to write would; that is what gives other
// processes the time to change the record it read.
//
//	go run ./examples/buzhug [-n 50] [-records 10] [-think 10ms] [-db PATH]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/examples/internal/demo"
	"github.com/psbase/psbase/storm"
)

var fields = []psbase.Field{
	{Name: "name", Type: psbase.String},
	{Name: "visits", Type: psbase.Int}, // +1 on every update
	{Name: "by", Type: psbase.Int},     // task number of the last writer
}

func main() {
	storm.MaybeLaunch() // a storm launcher never gets past this line
	n := flag.Int("n", 50, "number of processes")
	records := flag.Int("records", 10, "records in the table before the storm")
	think := flag.Duration("think", 10*time.Millisecond, "a process's work between its read and its write")
	db := flag.String("db", "", "store file (overwritten; default: in a temporary directory)")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up on the storm after this long")
	worker := flag.Int("worker", -1, "internal: run as the worker of this task")
	flag.Parse()
	ctx := context.Background()

	if *worker >= 0 {
		if err := run(ctx, *db, *worker, *think); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}

	path := demo.StorePath(*db, "buzhug")
	s, err := psbase.Create(ctx, path, fields, psbase.WithOverwrite())
	if err != nil {
		demo.Fatalf("%v", err)
	}
	for i := range *records {
		if _, err := s.Insert(ctx, psbase.Values{"name": fmt.Sprintf("item-%d", i+1)}); err != nil {
			demo.Fatalf("%v", err)
		}
	}

	l := demo.Storm(ctx, *n, *timeout, "-worker", "{i}", "-think", think.String(), "-db", path)
	failed, first := demo.Failures(l)

	// What the processes say they did: "insert ID", "update ID", "delete ID",
	// "gone" (the record was deleted under them), "conflict" (a retry).
	count := map[string]int{}
	updates := map[uint64]int{} // acknowledged updates per record
	deleted := map[uint64]bool{}
	inserted := 0
	for _, line := range demo.Lines(l) {
		var op string
		var id uint64
		fmt.Sscan(line, &op, &id)
		count[op]++
		switch op {
		case "insert":
			inserted++
		case "update":
			updates[id]++
		case "delete":
			deleted[id] = true
		}
	}
	fmt.Printf("%d processes, each a read and a write or delete, released together (skew %s, %s):\n",
		*n, demo.Ms(l.Skew), demo.Ms(l.Wall))
	fmt.Printf("  %d inserted, %d updated (%d retries after ErrConflict), %d deleted, %d found their record already deleted, %d failed\n",
		count["insert"], count["update"], count["conflict"], count["delete"], count["gone"], failed)
	if failed > 0 {
		fmt.Printf("  first failure: %s\n", first)
	}

	// What the table says.
	var problems []string
	if failed > 0 {
		problems = append(problems, fmt.Sprintf("%d processes failed", failed))
	}
	rep, err := s.Check(ctx)
	if err != nil {
		problems = append(problems, err.Error())
	}
	want := *records + inserted - len(deleted)
	all, err := s.Select(ctx, psbase.Query{})
	if err != nil {
		demo.Fatalf("%v", err)
	}
	if len(all) != want {
		problems = append(problems, fmt.Sprintf("%d records, expected %d", len(all), want))
	}
	for _, r := range all {
		u := updates[r.ID]
		if deleted[r.ID] || r.Version != uint64(1+u) || r.Values["visits"].(int64) != int64(u) {
			problems = append(problems, fmt.Sprintf("record %d: version %d, visits %d, deleted %v, but %d updates acknowledged",
				r.ID, r.Version, r.Values["visits"], deleted[r.ID], u))
		}
	}
	fmt.Printf("  table: %d + %d − %d = %d records, check: %d records and %d indexes verified, %d problems\n",
		*records, inserted, len(deleted), len(all), rep.Records, rep.Indexes, len(rep.Problems))
	if len(problems) > 0 {
		fmt.Println("FAILED:\n  " + strings.Join(problems, "\n  "))
		demo.Exit(1)
	}
	fmt.Println("  invariant holds: every update counted, no deleted record back, file clean")
	demo.Exit(0)
}

// run is one process: a read, then a write or a delete, as each run of the
// seed's application does. It prints what it did for the parent to check.
func run(ctx context.Context, path string, task int, think time.Duration) error {
	s, err := psbase.Open(ctx, path)
	if err != nil {
		return err
	}
	for {
		// The read.
		recs, err := s.Select(ctx, psbase.Query{})
		if err != nil {
			return err
		}
		time.Sleep(think)
		if len(recs) == 0 || task%3 == 0 {
			id, err := s.Insert(ctx, psbase.Values{"name": fmt.Sprintf("new-%d", task), "by": task})
			if err != nil {
				return err
			}
			fmt.Println("insert", id)
			return nil
		}
		rec := recs[rand.IntN(len(recs))]
		if task%3 == 1 {
			// Update from the version read; ErrConflict if someone updated
			// it since, and then we read again.
			visits := rec.Values["visits"].(int64)
			_, err = s.Update(ctx, rec, psbase.Values{"visits": visits + 1, "by": task})
			switch {
			case errors.Is(err, psbase.ErrConflict):
				fmt.Println("conflict", rec.ID)
				continue
			case errors.Is(err, psbase.ErrNotFound):
				fmt.Println("gone", rec.ID)
				continue
			case err != nil:
				return err
			}
			fmt.Println("update", rec.ID)
			return nil
		}
		_, err = s.Delete(ctx, rec.ID)
		switch {
		case errors.Is(err, psbase.ErrNotFound):
			fmt.Println("gone", rec.ID)
			continue
		case err != nil:
			return err
		}
		fmt.Println("delete", rec.ID)
		return nil
	}
}

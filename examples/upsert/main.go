// Upsert: importers racing to add the same external record.
//
// Seed 003's first example imports accounts from another system: look up the
// external id; if it is there, update the account, otherwise insert it. Two
// importers receiving the same message at once both see "not there" and both
// insert: a duplicate, or, with a unique key, a unique-violation error in one
// of them. A parallel command test (run the importer N times at once, fail on
// any non-zero exit) catches it.
//
// Here N importer processes, released at the same instant by the storm
// package, each import the same few external ids, three ways:
//
//  1. check-then-insert in separate calls (Select, then Insert or Update),
//     no index: duplicates;
//  2. the same, with a unique index on the external id: no duplicates, but
//     importers fail with ErrDuplicate, the seed's unique violation;
//  3. s.Upsert on the unique index: the check and the insert-or-update in one
//     locked transaction. Exactly one record per id, no failure.
//
// Between looking an id up and writing it, an importer "works" for -think
// (the seed sleeps 100 ms there, to make the race show every time). The
// first two are expected to go wrong; the program exits 0 only if the
// third is exact.
//
//	go run ./examples/upsert [-n 20] [-ids 5] [-think 20ms] [-db PATH]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/examples/internal/demo"
	"github.com/psbase/psbase/storm"
)

var fields = []psbase.Field{
	{Name: "ext_id", Type: psbase.String}, // the other system's id
	{Name: "name", Type: psbase.String},
	{Name: "imported_by", Type: psbase.Int}, // task number of the last importer
}

func main() {
	storm.MaybeLaunch() // a storm launcher never gets past this line
	n := flag.Int("n", 20, "number of importer processes")
	ids := flag.Int("ids", 5, "external ids each importer imports")
	think := flag.Duration("think", 20*time.Millisecond, "an importer's work between the lookup and the write")
	db := flag.String("db", "", "store file (overwritten; default: in a temporary directory)")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up on a storm after this long")
	worker := flag.String("worker", "", "internal: run as an importer in this mode (check or upsert)")
	task := flag.Int("task", 0, "internal: the importer's task number")
	flag.Parse()
	ctx := context.Background()

	if *worker != "" {
		if err := importAll(ctx, *db, *worker, *task, *ids, *think); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}

	path := demo.StorePath(*db, "upsert")
	fmt.Printf("%d importer processes, each importing the same %d external ids:\n", *n, *ids)
	variants := []struct {
		title  string
		mode   string
		unique bool
	}{
		{"check-then-insert, separate calls", "check", false},
		{"check-then-insert + unique index", "check", true},
		{"Upsert on a unique index", "upsert", true},
	}
	ok := false
	for _, v := range variants {
		s, err := psbase.Create(ctx, path, fields, psbase.WithOverwrite())
		if err != nil {
			demo.Fatalf("%v", err)
		}
		if v.unique {
			if err := s.CreateIndex(ctx, "ext_id", psbase.Unique()); err != nil {
				demo.Fatalf("%v", err)
			}
		}
		l := demo.Storm(ctx, *n, *timeout,
			"-worker", v.mode, "-task", "{i}", "-ids", strconv.Itoa(*ids), "-think", think.String(), "-db", path)
		failed, first := demo.Failures(l)
		records, err := s.Len(ctx)
		if err != nil {
			demo.Fatalf("%v", err)
		}
		// Records per external id, as a reader of the table would see it.
		worst := 0
		for i := range *ids {
			c, err := s.Count(ctx, psbase.Eq("ext_id", extID(i)))
			if err != nil {
				demo.Fatalf("%v", err)
			}
			worst = max(worst, c)
		}
		fmt.Printf("  %-34s %3d records for %d ids (%d duplicates, up to %d per id), %d importers failed\n",
			v.title+":", records, *ids, records-*ids, worst, failed)
		if failed > 0 {
			fmt.Printf("  %34s first failure: %s\n", "", first)
		}
		if v.mode == "upsert" {
			ok = records == *ids && worst == 1 && failed == 0
		}
	}
	if !ok {
		fmt.Println("FAILED: Upsert left duplicates or failures")
		demo.Exit(1)
	}
	fmt.Println("the first two are expected to go wrong; Upsert is exact")
	demo.Exit(0)
}

func extID(i int) string { return fmt.Sprintf("acct-%d", i+1) }

// importAll is one importer process: it imports external ids 1..ids.
func importAll(ctx context.Context, path, mode string, task, ids int, think time.Duration) error {
	s, err := psbase.Open(ctx, path)
	if err != nil {
		return err
	}
	for i := range ids {
		account := psbase.Values{"ext_id": extID(i), "name": "Account " + extID(i), "imported_by": task}
		switch mode {
		case "check":
			// The seed's importer: look it up, then insert or update. Two
			// calls, two lock sections; another importer can insert in between.
			var found []psbase.Record
			found, err = s.Select(ctx, psbase.Query{Where: []psbase.Filter{psbase.Eq("ext_id", extID(i))}, Limit: 1})
			time.Sleep(think)
			if err == nil && len(found) == 0 {
				_, err = s.Insert(ctx, account)
			} else if err == nil {
				err = s.Txn(ctx, func(tx *psbase.Tx) error {
					_, err := tx.UpdateByID(found[0].ID, account)
					return err
				})
			}
		case "upsert":
			// One call: find by the unique key and insert or update, under
			// one exclusive lock.
			time.Sleep(think)
			_, _, err = s.Upsert(ctx, "ext_id", account)
		default:
			err = errors.New("unknown mode " + mode)
		}
		if err != nil {
			return fmt.Errorf("import %s: %w", extID(i), err)
		}
	}
	return nil
}

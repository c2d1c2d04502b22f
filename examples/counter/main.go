// Counter: the read-modify-write race, told with psbase.
//
// Seed 001 (a Python TaskRunner) starts N processes, holds them at an event,
// releases them at once, and has each read a counter in SQLite, add one, and
// write it back. With a cross-process file lock around the read AND the write
// the counter ends at exactly N; without it, increments are lost.
//
// Here 50 real processes are released together by the storm package, and
// each increments one record 20 times. Each increment is one s.Txn: the read,
// the +1 and the write all happen under the store's exclusive lock, so the
// counter must end at exactly 50 × 20 = 1000.
//
// Then the same storm runs "torn": s.Get in one call and the write of the
// old value + 1 in a second call. Each call is atomic, but another process
// can write between the two, and its increment is overwritten. That variant
// is expected to lose updates; it is the control that shows the storm
// really races. The program exits 0 only if the locked counter is exact.
//
//	go run ./examples/counter [-n 50] [-k 20] [-db PATH] [-torn=false]
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

func main() {
	storm.MaybeLaunch() // a storm launcher never gets past this line
	n := flag.Int("n", 50, "number of processes")
	k := flag.Int("k", 20, "increments per process")
	db := flag.String("db", "", "store file (overwritten; default: in a temporary directory)")
	torn := flag.Bool("torn", true, "also run the storm without the lock held across read and write")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up on a storm after this long")
	worker := flag.String("worker", "", "internal: run as a worker in this mode (locked or torn)")
	id := flag.Uint64("id", 0, "internal: the worker's counter record")
	flag.Parse()
	ctx := context.Background()

	if *worker != "" {
		if err := work(ctx, *db, *worker, *id, *k); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}

	path := demo.StorePath(*db, "counter")
	want := *n * *k

	got, l := runStorm(ctx, path, "locked", *n, *k, *timeout)
	failed, first := demo.Failures(l)
	err := check(ctx, path)
	ok := got == want && failed == 0 && err == nil
	status := "check ok"
	if err != nil {
		status = "CHECK FAILED: " + err.Error()
	}
	fmt.Printf("psbase (lock held across read-modify-write): %d processes × %d increments → counter = %d (expected %d), %d lost, %s, skew %s, %s\n",
		*n, *k, got, want, want-got, status, demo.Ms(l.Skew), demo.Ms(l.Wall))
	if failed > 0 {
		fmt.Printf("  %d processes failed; first: %s\n", failed, first)
	}

	if *torn {
		got, l := runStorm(ctx, path, "torn", *n, *k, *timeout)
		note := "expected: other processes wrote between each Get and its write"
		if got == want {
			note = "none lost this time; the race depends on timing"
		}
		fmt.Printf("without the lock across read and write: counter = %d (expected %d), %d lost, %s — %s\n",
			got, want, want-got, demo.Ms(l.Wall), note)
		if failed, first := demo.Failures(l); failed > 0 {
			fmt.Printf("  %d processes failed; first: %s\n", failed, first)
		}
	}
	if !ok {
		fmt.Println("FAILED: the counter incremented under the lock is not exact")
		demo.Exit(1)
	}
	demo.Exit(0)
}

// storm1 creates the store with one record n = 0, runs the storm of n
// workers in mode, and returns the final counter.
func runStorm(ctx context.Context, path, mode string, n, k int, timeout time.Duration) (int, *storm.CommandLoop) {
	s, err := psbase.Create(ctx, path, []psbase.Field{{Name: "n", Type: psbase.Int}}, psbase.WithOverwrite())
	if err != nil {
		demo.Fatalf("%v", err)
	}
	id, err := s.Insert(ctx, psbase.Values{"n": 0})
	if err != nil {
		demo.Fatalf("%v", err)
	}
	l := demo.Storm(ctx, n, timeout, "-worker", mode, "-db", path, "-id", strconv.FormatUint(id, 10), "-k", strconv.Itoa(k))
	rec, err := s.Get(ctx, id)
	if err != nil {
		demo.Fatalf("%v", err)
	}
	return int(rec.Values["n"].(int64)), l
}

// check runs psbase's integrity check of the whole file.
func check(ctx context.Context, path string) error {
	s, err := psbase.Open(ctx, path)
	if err != nil {
		return err
	}
	_, err = s.Check(ctx)
	return err
}

// work is one worker process: k increments of the counter record.
func work(ctx context.Context, path, mode string, id uint64, k int) error {
	s, err := psbase.Open(ctx, path)
	if err != nil {
		return err
	}
	defer s.Close()
	for range k {
		switch mode {
		case "locked":
			// One transaction, one exclusive lock: nobody can write between
			// this read and this write.
			err = s.Txn(ctx, func(tx *psbase.Tx) error {
				rec, err := tx.Get(id)
				if err != nil {
					return err
				}
				_, err = tx.UpdateByID(id, psbase.Values{"n": rec.Values["n"].(int64) + 1})
				return err
			})
		case "torn":
			// Two calls, two lock sections: the value read may be stale by
			// the time it is written back.
			var rec psbase.Record
			if rec, err = s.Get(ctx, id); err == nil {
				err = s.Txn(ctx, func(tx *psbase.Tx) error {
					_, err := tx.UpdateByID(id, psbase.Values{"n": rec.Values["n"].(int64) + 1})
					return err
				})
			}
		default:
			err = errors.New("unknown mode " + mode)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

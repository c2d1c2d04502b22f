package psbase_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/psbase/psbase"
)

// A service follows what other processes (cron jobs, the CLI) write to the
// store: it reads the table and its revision in one snapshot, then watches
// from that revision. Watch blocks until another process commits, woken by
// the file system; here a second handle plays the cron job.
func ExampleStore_Watch() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	s, err := psbase.Create(ctx, path, []psbase.Field{{Name: "name", Type: psbase.String}})
	if err != nil {
		log.Fatal(err)
	}
	s.Insert(ctx, psbase.Values{"name": "existing"})

	// The starting point: the records and the revision they are at.
	var rev uint64
	s.View(ctx, func(tx *psbase.Tx) error {
		n, _ := tx.Len()
		rev = tx.Revision()
		fmt.Printf("%d record(s) at revision %d\n", n, rev)
		return nil
	})

	// Another process writes.
	go func() {
		cron, err := psbase.Open(ctx, path)
		if err != nil {
			log.Fatal(err)
		}
		id, _ := cron.Insert(ctx, psbase.Values{"name": "nightly"})
		cron.UpdateByID(ctx, id, psbase.Values{"name": "nightly-backup"})
		cron.Delete(ctx, 1)
	}()

	seen := 0
	for ch, err := range s.Watch(ctx, rev) {
		var gone *psbase.ChangesGoneError
		switch {
		case errors.As(err, &gone):
			// Fell behind the log's retention: read the table afresh
			// and watch again from gone.Rev.
			log.Fatal(err)
		case err != nil:
			log.Fatal(err)
		}
		fmt.Println("revision", ch.Rev, ch.Kind, "record", ch.ID)
		if seen++; seen == 3 {
			break // releases the watch
		}
	}
	// Output:
	// 1 record(s) at revision 1
	// revision 2 insert record 2
	// revision 3 update record 2
	// revision 4 delete record 1
}

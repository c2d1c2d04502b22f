package psbase_test

// insert_id_example_test.go: the runnable Example of Tx.InsertWithID.
//
// May touch: a temporary directory.

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/psbase/psbase"
)

// ExampleTx_InsertWithID keeps the IDs of records copied from elsewhere (an
// export, an old backup): a used ID is refused, and the sequence moves past
// the highest ID so later inserts never clash.
func ExampleTx_InsertWithID() {
	path, cleanup := tempPath()
	defer cleanup()
	ctx := context.Background()
	s, err := psbase.Create(ctx, path, []psbase.Field{{Name: "name", Type: psbase.String}})
	if err != nil {
		log.Fatal(err)
	}
	err = s.Txn(ctx, func(tx *psbase.Tx) error {
		return tx.InsertWithID(42, psbase.Values{"name": "kept"})
	})
	if err != nil {
		log.Fatal(err)
	}
	err = s.Txn(ctx, func(tx *psbase.Tx) error {
		return tx.InsertWithID(42, psbase.Values{"name": "again"})
	})
	fmt.Println(errors.Is(err, psbase.ErrDuplicate))
	id, err := s.Insert(ctx, psbase.Values{"name": "new"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(id)
	// Output:
	// true
	// 43
}

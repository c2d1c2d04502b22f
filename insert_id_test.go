package psbase

// insert_id_test.go: Tx.InsertWithID (insert_id.go): the record lands under
// the ID, the sequence moves past it, a used ID and a unique value are
// refused with nothing written. Negative controls: with the sequence left
// behind a later Insert fails and Check reports it; without the clash check
// a record is silently overwritten.
//
// May touch: stores in t.TempDir().

import (
	"context"
	"errors"
	"testing"
)

func TestInsertWithID(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStoreFields(t, []Field{
		{Name: "name", Type: String, Unique: true, Indexed: true},
		{Name: "n", Type: Int},
	})
	err := s.Txn(ctx, func(tx *Tx) error {
		if err := tx.InsertWithID(100, Values{"name": "a", "n": int64(1)}); err != nil {
			return err
		}
		return tx.InsertWithID(5, Values{"name": "b"})
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Insert(ctx, Values{"name": "c"})
	if err != nil || id != 101 {
		t.Fatalf("Insert after InsertWithID(100): id %d, %v; want 101", id, err)
	}
	rec, err := s.Get(ctx, 5)
	if err != nil || rec.Version != 1 || rec.Values["name"] != "b" || rec.Values["n"] != int64(0) {
		t.Fatalf("record 5: %+v, %v", rec, err)
	}
	before := fileHash(t, path)
	refuse := func(what string, id uint64, v Values, want error) {
		t.Helper()
		err := s.Txn(ctx, func(tx *Tx) error { return tx.InsertWithID(id, v) })
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
		if got := fileHash(t, path); got != before {
			t.Fatalf("%s: the file changed", what)
		}
	}
	refuse("an ID in use", 100, Values{"name": "x"}, ErrDuplicate)
	var de *DuplicateError
	err = s.Txn(ctx, func(tx *Tx) error { return tx.InsertWithID(5, Values{"name": "x"}) })
	if !errors.As(err, &de) || de.Field != "id" || de.ExistingID != 5 {
		t.Fatalf("an ID in use: %v, want a *DuplicateError for id 5", err)
	}
	refuse("a unique value in use", 200, Values{"name": "a"}, ErrDuplicate)
	refuse("ID 0", 0, Values{"name": "y"}, ErrSchema)
	refuse("an unknown field", 300, Values{"zz": "y"}, ErrSchema)
	err = s.View(ctx, func(tx *Tx) error { return tx.InsertWithID(400, Values{"name": "z"}) })
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("in a read-only transaction: %v", err)
	}
	rep, err := s.Check(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("Check: %+v, %v", rep, err)
	}
}

// TestInsertWithIDNegativeControls: each weakened InsertWithID is caught by
// what TestInsertWithID asserts.
func TestInsertWithIDNegativeControls(t *testing.T) {
	ctx := context.Background()
	t.Run("sequence left behind", func(t *testing.T) {
		s, _ := newTestStore(t)
		s.cfg.weak.insertIDNoSeq = true
		if err := s.Txn(ctx, func(tx *Tx) error { return tx.InsertWithID(1, Values{"name": "a"}) }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Insert(ctx, Values{"name": "b"}); err == nil {
			t.Fatal("weakened: a later Insert did not clash with the ID")
		}
		if rep, err := s.Check(ctx); err == nil && rep.OK() {
			t.Fatal("weakened: Check did not see the sequence behind the records")
		}
	})
	t.Run("no clash check", func(t *testing.T) {
		s, _ := newTestStore(t)
		s.cfg.weak.insertIDNoClash = true
		id, err := s.Insert(ctx, Values{"name": "a"})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Txn(ctx, func(tx *Tx) error { return tx.InsertWithID(id, Values{"name": "b"}) })
		if errors.Is(err, ErrDuplicate) {
			t.Fatal("weakened: the clash was still refused")
		}
		if rec, _ := s.Get(ctx, id); err == nil && rec.Values["name"] == "a" {
			t.Fatal("weakened: the record was not overwritten; the control shows nothing")
		}
	})
}

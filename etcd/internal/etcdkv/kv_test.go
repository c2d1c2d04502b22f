package etcdkv

// kv_test.go: the kv contract on a real cluster — atomic commit, snapshot
// isolation, ordered iteration both ways across pages, Seek,
// read-your-writes, nested buckets, sequences, and bad input.
//
// May touch: stores of its own names on the shared cluster.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/internal/kv"
)

func isUnknown(err error) bool { return errors.Is(err, psbase.ErrUnknownOutcome) }

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// walk returns a cursor's keys, forwards or backwards.
func walk(c kv.Cursor, back bool) []string {
	var out []string
	k, _ := c.First()
	if back {
		k, _ = c.Last()
	}
	for k != nil {
		out = append(out, string(k))
		if back {
			k, _ = c.Prev()
		} else {
			k, _ = c.Next()
		}
	}
	return out
}

func TestKVIterationAndReadYourWrites(t *testing.T) {
	c := cluster(t)
	b := open(t, c.Endpoints(), storeName(t), nil)
	ctx := tctx(t)
	model := map[string]string{}
	// 300 keys (every other one of k0000..k0599), more than one page of
	// pageSize, in transactions below the 128-operation limit.
	for lo := 0; lo < 600; lo += 200 {
		if err := b.Update(ctx, "fill", func(tx kv.Tx) error {
			bk := tx.Bucket([]byte("records"))
			if bk == nil {
				var err error
				if bk, err = tx.CreateBucket([]byte("records")); err != nil {
					return err
				}
				nested, err := bk.CreateBucket([]byte("nested"))
				if err != nil {
					return err
				}
				if err := nested.Put([]byte("inner"), []byte("x")); err != nil {
					return err
				}
			}
			for i := lo; i < lo+200; i += 2 {
				k := fmt.Sprintf("k%04d", i)
				model[k] = "v" + k
				if err := bk.Put([]byte(k), []byte(model[k])); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := b.Begin(ctx, true, "mix")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	bk := tx.Bucket([]byte("records"))
	// Buffered writes between, before and after the snapshot's keys;
	// deletes of snapshot keys and of a buffered one.
	for i := 1; i < 600; i += 50 {
		k := fmt.Sprintf("k%04d", i)
		model[k] = "new"
		bk.Put([]byte(k), []byte("new"))
	}
	for i := 0; i < 600; i += 14 {
		k := fmt.Sprintf("k%04d", i)
		delete(model, k)
		bk.Delete([]byte(k))
	}
	bk.Put([]byte("a-first"), []byte("1"))
	bk.Put([]byte("z-last"), []byte("1"))
	bk.Put([]byte("gone"), []byte("1"))
	bk.Delete([]byte("gone"))
	model["a-first"], model["z-last"] = "1", "1"
	want := make([]string, 0, len(model))
	for k := range model {
		want = append(want, k)
	}
	slices.Sort(want)
	if got := walk(bk.Cursor(), false); !slices.Equal(got, want) {
		t.Fatalf("forward walk: %d keys, want %d\n got %v\nwant %v", len(got), len(want), got, want)
	}
	back := slices.Clone(want)
	slices.Reverse(back)
	if got := walk(bk.Cursor(), true); !slices.Equal(got, back) {
		t.Fatalf("backward walk: %d keys, want %d", len(got), len(back))
	}
	// Read-your-writes and hidden deletes.
	if v := bk.Get([]byte("k0001")); string(v) != "new" {
		t.Fatalf("Get of a buffered put = %q", v)
	}
	if v := bk.Get([]byte("k0014")); v != nil {
		t.Fatalf("Get of a deleted key = %q", v)
	}
	// Seek: an absent key lands on the next; a present one on itself;
	// then Prev and Next move from there.
	cur := bk.Cursor()
	if k, v := cur.Seek([]byte("k0003")); string(k) != "k0004" || string(v) != "vk0004" {
		t.Fatalf("Seek(k0003) = %q %q", k, v)
	}
	if k, _ := cur.Prev(); string(k) != "k0002" {
		t.Fatalf("Prev after Seek = %q", k)
	}
	if k, _ := cur.Seek([]byte("k0001")); string(k) != "k0001" {
		t.Fatalf("Seek(k0001) = %q", k)
	}
	if k, _ := cur.Seek([]byte("zzz")); k != nil {
		t.Fatalf("Seek past the end = %q", k)
	}
	// The nested bucket's keys are not the parent's.
	if got := bk.Bucket([]byte("nested")).Get([]byte("inner")); string(got) != "x" {
		t.Fatalf("nested Get = %q", got)
	}
	var names []string
	bk.ForEachBucket(func(n []byte) error { names = append(names, string(n)); return nil })
	if !slices.Equal(names, []string{"nested"}) {
		t.Fatalf("ForEachBucket = %v", names)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// Committed: a new snapshot walks the same keys.
	if err := b.View(ctx, func(tx kv.Tx) error {
		if got := walk(tx.Bucket([]byte("records")).Cursor(), false); !slices.Equal(got, want) {
			t.Errorf("after commit: %d keys, want %d", len(got), len(want))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestKVAtomicCommitAndSnapshot(t *testing.T) {
	c := cluster(t)
	name := storeName(t)
	b := open(t, c.Endpoints(), name, nil)
	other := open(t, c.Endpoints(), name, nil) // a second holder (own session)
	ctx := tctx(t)
	put := func(b *Backend, v string, n int, rollback bool) error {
		tx, err := b.Begin(ctx, true, "put")
		if err != nil {
			return err
		}
		bk := tx.Bucket([]byte("r"))
		if bk == nil {
			bk, _ = tx.CreateBucket([]byte("r"))
		}
		for i := range n {
			bk.Put(fmt.Appendf(nil, "k%03d", i), []byte(v))
		}
		if rollback {
			return tx.Rollback()
		}
		return tx.Commit()
	}
	if err := put(b, "one", 300, false); err == nil {
		t.Fatal("300 puts committed above the 128-operation limit")
	}
	if err := put(b, "one", 100, false); err != nil {
		t.Fatal(err)
	}
	// A snapshot taken now keeps seeing "one" after other commits "two",
	// in Gets and in cursors opened after the commit.
	snap, err := b.Begin(ctx, false, "")
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Rollback()
	if err := put(other, "two", 100, false); err != nil {
		t.Fatal(err)
	}
	if err := put(other, "three", 100, true); err != nil { // rolled back: never seen
		t.Fatal(err)
	}
	if v := snap.Bucket([]byte("r")).Get([]byte("k050")); string(v) != "one" {
		t.Fatalf("snapshot Get = %q, want one", v)
	}
	cur := snap.Bucket([]byte("r")).Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if string(v) != "one" {
			t.Fatalf("snapshot cursor: %s = %q, want one", k, v)
		}
	}
	// A new snapshot sees all of "two", nothing of "three".
	if err := b.View(ctx, func(tx kv.Tx) error {
		n := 0
		cur := tx.Bucket([]byte("r")).Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			n++
			if string(v) != "two" {
				t.Errorf("%s = %q, want two", k, v)
			}
		}
		if n != 100 {
			t.Errorf("%d keys, want 100", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestKVSequencesAndBuckets(t *testing.T) {
	c := cluster(t)
	name := storeName(t)
	b1 := open(t, c.Endpoints(), name, nil)
	b2 := open(t, c.Endpoints(), name, nil)
	ctx := tctx(t)
	var seen []uint64
	next := func(b *Backend, commit bool) uint64 {
		tx, err := b.Begin(ctx, true, "seq")
		if err != nil {
			t.Fatal(err)
		}
		bk := tx.Bucket([]byte("records"))
		if bk == nil {
			bk, _ = tx.CreateBucket([]byte("records"))
		}
		n, err := bk.NextSequence()
		if err != nil {
			t.Fatal(err)
		}
		bk.Put(fmt.Appendf(nil, "%d", n), []byte("x"))
		if n2, _ := bk.NextSequence(); n2 != n+1 {
			t.Fatalf("second NextSequence in one Tx = %d after %d", n2, n)
		}
		if !commit {
			tx.Rollback()
			return n
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return n + 1
	}
	for i := range 6 {
		n := next([]*Backend{b1, b2}[i%2], true)
		if len(seen) > 0 && n <= seen[len(seen)-1] {
			t.Fatalf("sequence %d after %v", n, seen)
		}
		seen = append(seen, n)
	}
	// Deleting keys does not move the sequence back.
	if err := b1.Update(ctx, "del", func(tx kv.Tx) error {
		bk := tx.Bucket([]byte("records"))
		cur := bk.Cursor()
		for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
			bk.Delete(k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := next(b2, true); n <= seen[len(seen)-1] {
		t.Fatalf("sequence %d after deletes, last was %d", n, seen[len(seen)-1])
	}
	// DeleteBucket and CreateBucket again in one Tx: the old keys go, the
	// new ones stay (the commit's delete ranges leave gaps for them).
	if err := b1.Update(ctx, "recreate", func(tx kv.Tx) error {
		if err := tx.DeleteBucket([]byte("records")); err != nil {
			return err
		}
		if tx.Bucket([]byte("records")) != nil {
			t.Error("bucket visible after DeleteBucket")
		}
		bk, err := tx.CreateBucket([]byte("records"))
		if err != nil {
			return err
		}
		if bk.Sequence() != 0 || bk.Get([]byte("1")) != nil {
			t.Error("recreated bucket shows the old one")
		}
		bk.Put([]byte("m"), []byte("new"))
		ix, _ := bk.CreateBucket([]byte("ix"))
		ix.Put([]byte("a"), []byte("b"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b2.View(ctx, func(tx kv.Tx) error {
		bk := tx.Bucket([]byte("records"))
		if got := walk(bk.Cursor(), false); !slices.Equal(got, []string{"m"}) {
			t.Errorf("after recreate: %v", got)
		}
		if v := bk.Bucket([]byte("ix")).Get([]byte("a")); !bytes.Equal(v, []byte("b")) {
			t.Errorf("nested after recreate: %q", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestKVBadInput(t *testing.T) {
	c := cluster(t)
	ctx := tctx(t)
	for _, name := range []string{"", "a/b", string(make([]byte, 201))} {
		if _, err := Open(ctx, Config{Endpoints: c.Endpoints(), Name: name}); !errors.Is(err, psbase.ErrOption) {
			t.Errorf("Open(name %q) = %v, want ErrOption", name, err)
		}
	}
	b := open(t, c.Endpoints(), storeName(t), nil)
	ro, err := b.Begin(ctx, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.CreateBucket([]byte("x")); !errors.Is(err, psbase.ErrReadOnly) {
		t.Errorf("CreateBucket in a read-only Tx = %v", err)
	}
	ro.Rollback()
	if err := ro.Rollback(); !errors.Is(err, psbase.ErrTxDone) {
		t.Errorf("second Rollback = %v", err)
	}
	tx, err := b.Begin(ctx, true, "bad")
	if err != nil {
		t.Fatal(err)
	}
	bk, _ := tx.CreateBucket([]byte("x"))
	if _, err := tx.CreateBucket([]byte("x")); err == nil {
		t.Error("CreateBucket of an existing bucket succeeded")
	}
	if err := bk.Put(nil, []byte("v")); err == nil {
		t.Error("Put of an empty key succeeded")
	}
	if err := tx.DeleteBucket([]byte("nope")); err == nil {
		t.Error("DeleteBucket of a missing bucket succeeded")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := bk.Put([]byte("k"), []byte("v")); !errors.Is(err, psbase.ErrTxDone) {
		t.Errorf("Put after Commit = %v", err)
	}
	if err := tx.Commit(); !errors.Is(err, psbase.ErrTxDone) {
		t.Errorf("second Commit = %v", err)
	}
}

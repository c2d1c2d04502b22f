package boltkv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/boltwalk"
)

// TestInspectable: the bbolt this module links has the field layout
// frees.go reads. If a bbolt upgrade changes it, the checks would silently
// stop (FreesFit and TreeFits return nil): this test fails instead.
func TestInspectable(t *testing.T) {
	if !Inspectable() {
		t.Fatal("bbolt's Tx, DB, Bucket or node no longer has the fields frees.go reads: update boltLayout")
	}
}

// TestFreesFitAllocs: the check before every commit allocates nothing, on
// a transaction that touched top-level and nested buckets.
func TestFreesFitAllocs(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "a.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fill := func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists([]byte("records"))
		if err != nil {
			return err
		}
		outer, err := tx.CreateBucketIfNotExists([]byte("indexes"))
		if err != nil {
			return err
		}
		inner, err := outer.CreateBucketIfNotExists([]byte("name"))
		if err != nil {
			return err
		}
		for i := range 2000 {
			k := fmt.Appendf(nil, "key-%06d", i)
			if err := top.Put(k, make([]byte, 100)); err != nil {
				return err
			}
			if err := inner.Put(k, nil); err != nil {
				return err
			}
		}
		return nil
	}
	if err := db.Update(fill); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := tx.Bucket([]byte("records")).Put([]byte("key-000100"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Bucket([]byte("indexes")).Bucket([]byte("name")).Delete([]byte("key-000200")); err != nil {
		t.Fatal(err)
	}
	if err := FreesFit(tx); err != nil {
		t.Fatalf("a sound file: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = FreesFit(tx) }); n != 0 {
		t.Fatalf("FreesFit allocates %v times per call, want 0", n)
	}
}

// TestFreesFitCrossParent: records R=[P,Q,…], P=[c0,c1], Q=[q0,q1], the
// overflow count of leaf q0 damaged. Deleting c1's keys makes rebalance
// merge c1 away and P absorb Q, after which c0's next sibling is q0, which
// bbolt frees with its billions of overflow pages (found by a review that
// logged every page bbolt freed). FreesFit must refuse the commit. Negative
// control: without the neighbors under other parents the check passes.
func TestFreesFitCrossParent(t *testing.T) {
	key := func(i int) []byte { return append(bytes.Repeat([]byte{'k'}, 999), byte('A'+i)) }
	path := filepath.Join(t.TempDir(), "h.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("records"))
		for i := 0; i < 16 && err == nil; i++ {
			err = b.Put(key(i), make([]byte, 10))
		}
		return err
	})
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("records")).Put(key(4), make([]byte, 9000)) })
	}
	if err != nil {
		t.Fatal(err)
	}
	// q0: the leaf holding the big value (overflow 2), the first child of
	// the root's second child.
	var q0 uint64
	err = db.View(func(tx *bolt.Tx) error {
		m, ps := mapped(boltLayout(), tx)
		root := uint64(tx.Bucket([]byte("records")).Root())
		page := func(id uint64) (flags uint16, count int, ov uint32) {
			off := int(id) * ps
			return binary.LittleEndian.Uint16(m[off+8:]), int(binary.LittleEndian.Uint16(m[off+10:])), binary.LittleEndian.Uint32(m[off+12:])
		}
		child := func(id uint64, i int) uint64 {
			return binary.LittleEndian.Uint64(m[int(id)*ps+16+i*16+8:])
		}
		if f, n, _ := page(root); f != 1 || n < 2 {
			return fmt.Errorf("root page %d: flags %d, %d children; the test needs a branch of two or more", root, f, n)
		}
		q := child(root, 1)
		if f, _, _ := page(q); f != 1 {
			return fmt.Errorf("the root's second child %d is not a branch", q)
		}
		q0 = child(q, 0)
		if f, _, ov := page(q0); f != 2 || ov == 0 {
			return fmt.Errorf("page %d: flags %d overflow %d, want the leaf with the big value", q0, f, ov)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ov [4]byte
	binary.LittleEndian.PutUint32(ov[:], 0xFFFFFFF0)
	if _, err := f.WriteAt(ov[:], int64(q0)*4096+12); err != nil {
		t.Fatal(err)
	}
	f.Close()

	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() // never commit: that is the hang
	b := tx.Bucket([]byte("records"))
	for _, i := range []int{1, 2, 3} {
		if err := b.Delete(key(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := FreesFit(tx); !errors.Is(err, boltwalk.ErrDamaged) {
		t.Fatalf("FreesFit = %v, want the damaged page %d refused", err, q0)
	}
	l := boltLayout()
	m, ps := mapped(l, tx)
	if err := bucketFrees(l, reflect.ValueOf(tx).Elem().Field(l.txRoot), m, ps, uint64(tx.Size())/uint64(ps), 0, false); err != nil {
		t.Fatalf("negative control: without the neighbors under other parents the check should miss page %d, got %v", q0, err)
	}
}

package boltkv

import (
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
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

package psbase

// Format 4 (the change log): how older stores gain it, and what the format
// 3 psbase does on a format 4 store (reads, refuses to write).

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// toFormatThree takes a store back to what a format 3 psbase leaves: no
// change log, format 3, min_write 2.
func toFormatThree(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keyRev, keyLogBase, keyLogBytes, keyLogKeep, keyStoreID} {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketChanges) != nil {
			if err := tx.DeleteBucket(bucketChanges); err != nil {
				return err
			}
		}
		if err := meta.Put(keyFormat, putU32(3)); err != nil {
			return err
		}
		return meta.Put(keyMinWrite, putU32(2))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func storeFormat(t testing.TB, s *Store) (format int, rev uint64) {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.FormatVersion, st.Revision
}

// TestFormatThreeUpgrade: a format 3 store becomes format 4 (min_write 4,
// the log at revision 0) at its first write that changes something, by
// Cleanup, or by the first Changes, Revision or Watch; reads and writes
// that change nothing leave it as it is. A format 1 store keeps no log
// through writes (its records' checksums would be wrong under format 4)
// until Cleanup or the feed upgrades it.
func TestFormatThreeUpgrade(t *testing.T) {
	ctx := context.Background()
	mk := func(t *testing.T) (*Store, string) {
		s, path := newFeedStore(t, WithoutWarmReads())
		mustInsert(t, s, Values{"tag": "old"})
		toFormatThree(t, path)
		if f, rev := storeFormat(t, s); f != 3 || rev != 0 {
			t.Fatalf("format %d revision %d, want a format 3 store", f, rev)
		}
		return s, path
	}
	minWrite := func(t *testing.T, path string) uint32 {
		db, err := bolt.Open(path, 0o644, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v uint32
		db.View(func(tx *bolt.Tx) error { v = u32(tx.Bucket(bucketMeta).Get(keyMinWrite)); return nil })
		return v
	}
	t.Run("first write", func(t *testing.T) {
		s, path := mk(t)
		s.Get(ctx, 1)
		s.Txn(ctx, func(tx *Tx) error { return nil })
		if _, err := s.Delete(ctx, 42); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if f, _ := storeFormat(t, s); f != 3 {
			t.Fatalf("format %d after reads and writes that changed nothing, want 3", f)
		}
		id := mustInsert(t, s, Values{"tag": "new"})
		if f, rev := storeFormat(t, s); f != 4 || rev != 1 || minWrite(t, path) != 4 {
			t.Fatalf("after a write: format %d, revision %d, min_write %d; want 4, 1, 4", f, rev, minWrite(t, path))
		}
		wantChanges(t, s, 0, fmt.Sprintf("1 insert %d", id))
		if rep, err := s.Check(ctx); err != nil || !rep.OK() {
			t.Errorf("Check: %v %v", err, rep.Problems)
		}
	})
	t.Run("cleanup", func(t *testing.T) {
		s, path := mk(t)
		if _, err := s.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if f, rev := storeFormat(t, s); f != 4 || rev != 0 || minWrite(t, path) != 4 {
			t.Fatalf("after Cleanup: format %d, revision %d", f, rev)
		}
		if rep, err := s.Check(ctx); err != nil || !rep.OK() {
			t.Errorf("Check: %v %v", err, rep.Problems)
		}
	})
	t.Run("revision", func(t *testing.T) {
		s, _ := mk(t)
		if rev, err := s.Revision(ctx); err != nil || rev != 0 {
			t.Fatalf("Revision: %d %v", rev, err)
		}
		if f, _ := storeFormat(t, s); f != 4 {
			t.Fatalf("format %d after Revision, want 4", f)
		}
	})
	t.Run("format 1", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "v1.db")
		handStore(t, path, 1, 0, 0)
		s, err := Open(ctx, path, WithoutWarmReads())
		if err != nil {
			t.Fatal(err)
		}
		mustInsert(t, s, Values{"name": "x"})
		if f, rev := storeFormat(t, s); f != 1 || rev != 0 {
			t.Fatalf("a format 1 store after a write: format %d, revision %d; want 1, 0", f, rev)
		}
		if _, _, err := s.Changes(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if f, _ := storeFormat(t, s); f != 4 {
			t.Fatalf("format %d after Changes, want 4", f)
		}
		if r, err := s.Get(ctx, 1); err != nil || r.Values["name"] != "alpha" {
			t.Errorf("record 1 after the upgrade: %+v %v", r, err)
		}
		if rep, err := s.Check(ctx); err != nil || !rep.OK() {
			t.Errorf("Check: %v %v", err, rep.Problems)
		}
	})
}

func u32(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// formatThreeCommit is the last commit of format 3: format 4 adds the
// change log, which its psbase would not extend, so format 4 stores keep
// its writes out (min_write 4) and let its reads in (min_read 2).
const formatThreeCommit = "4aa8a50"

// TestFormatThreePsbaseOnFormatFourStore builds the format 3 psbase from the
// repository's history and runs it on a format 4 store: every read works;
// every write is refused with ErrNewerFormat (exit code 11), the file
// unchanged, so no write ever bypasses the change log.
func TestFormatThreePsbaseOnFormatFourStore(t *testing.T) {
	bin, dir := buildRelease(t, formatThreeCommit)
	ctx := context.Background()
	db := filepath.Join(dir, "v4.db")
	s, err := Create(ctx, db, feedFields)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustInsert(t, s, Values{"tag": fmt.Sprint("t", i), "n": i})
	}
	if f, rev := storeFormat(t, s); f != 4 || rev != 3 {
		t.Fatalf("format %d revision %d", f, rev)
	}
	s.Close()
	h := fileHash(t, db)
	for _, args := range [][]string{{"get", db, "1"}, {"count", db}, {"select", db, "n>=1"}, {"check", db}, {"export", db}, {"stats", db}, {"schema", db}} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("psbase %s %v (a read): %v\n%s", formatThreeCommit, args, err, out)
		}
	}
	for _, args := range [][]string{{"insert", db, "tag=new"}, {"update", db, "1", "n=9"}, {"incr", db, "2", "n"}, {"delete", db, "3"},
		{"upsert", db, "--key", "tag", "tag=t1", "n=5"}, {"cleanup", db}, {"create-index", db, "n"}, {"add-field", db, "x:string?"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 11 || !strings.Contains(string(out), "format") {
			t.Errorf("psbase %s %v (a write): %v\n%s\nwant exit 11 (ErrNewerFormat)", formatThreeCommit, args, err, out)
		}
	}
	if fileHash(t, db) != h {
		t.Error("the format 3 psbase changed the format 4 store")
	}
	s, err = Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check: %v %v", err, rep.Problems)
	}
	wantChanges(t, s, 0, "1 insert 1, 2 insert 2, 3 insert 3")
}

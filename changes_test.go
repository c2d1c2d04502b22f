package psbase

// Tests of the change log (changes.go): what each kind of write records,
// revisions, retention, Restore and Cleanup, Check, the entry encoding.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var feedFields = []Field{{Name: "tag", Type: String, Unique: true}, {Name: "n", Type: Int}}

func newFeedStore(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	return newTestStoreFields(t, feedFields, opts...)
}

// changesAfter returns every change after since, with the revision they end at.
func changesAfter(t testing.TB, s *Store, since uint64) ([]Change, uint64) {
	t.Helper()
	var all []Change
	for {
		chs, rev, err := s.Changes(context.Background(), since)
		if err != nil {
			t.Fatalf("Changes(%d): %v", since, err)
		}
		all = append(all, chs...)
		if len(chs) == 0 {
			return all, rev
		}
		since = rev
	}
}

func fmtChanges(chs []Change) string {
	parts := make([]string, len(chs))
	for i, c := range chs {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ")
}

func wantChanges(t testing.TB, s *Store, since uint64, want string) uint64 {
	t.Helper()
	chs, rev := changesAfter(t, s, since)
	if got := fmtChanges(chs); got != want {
		t.Errorf("changes after %d:\n got %s\nwant %s", since, got, want)
	}
	return rev
}

// TestChangesRecorded: every kind of write is one revision listing its net
// effect per record; what changes nothing leaves the revision alone.
func TestChangesRecorded(t *testing.T) {
	ctx := context.Background()
	s, _ := newFeedStore(t, WithoutGroupCommit())
	if rev, err := s.Revision(ctx); err != nil || rev != 0 {
		t.Fatalf("a new store is at revision %d (%v), want 0", rev, err)
	}
	a := mustInsert(t, s, Values{"tag": "a", "n": 1})
	b := mustInsert(t, s, Values{"tag": "b", "n": 2})
	ra, _ := s.Get(ctx, a)
	if _, err := s.Update(ctx, ra, Values{"n": 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, b, "n", 5); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Upsert(ctx, "tag", Values{"tag": "c", "n": 3}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Upsert(ctx, "tag", Values{"tag": "c", "n": 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	rev := wantChanges(t, s, 0, "1 insert 1, 2 insert 2, 3 update 1, 4 update 2, 5 insert 3, 6 update 3, 7 delete 2")

	// Refused writes, read-only and empty transactions: no revision.
	if _, err := s.Insert(ctx, Values{"tag": "a"}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate insert: %v", err)
	}
	if _, err := s.Update(ctx, ra, Values{"n": 11}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := s.Delete(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of nothing: %v", err)
	}
	if err := s.Txn(ctx, func(tx *Tx) error { _, err := tx.Get(a); return err }); err != nil {
		t.Fatal(err)
	}
	if err := s.Txn(ctx, func(tx *Tx) error {
		id, err := tx.Insert(Values{"tag": "gone"})
		if err == nil {
			_, err = tx.Delete(id)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Txn(ctx, func(tx *Tx) error {
		tx.Insert(Values{"tag": "rolled back"})
		return errors.New("no")
	}); err == nil {
		t.Fatal("want the error")
	}
	tx, _ := s.Begin(ctx, true)
	tx.Insert(Values{"tag": "rolled back too"})
	tx.Rollback()
	if r, _ := s.Revision(ctx); r != rev {
		t.Fatalf("revision %d after writes that changed nothing, want %d", r, rev)
	}

	// One transaction, one revision, net effects in ID order per kind.
	err := s.Txn(ctx, func(tx *Tx) error {
		d, err := tx.Insert(Values{"tag": "d"})
		if err != nil {
			return err
		}
		if _, err := tx.UpdateByID(d, Values{"n": 1}); err != nil { // still an insert
			return err
		}
		if _, err := tx.UpdateByID(3, Values{"n": 5}); err != nil {
			return err
		}
		if _, err := tx.UpdateByID(a, Values{"n": 6}); err != nil {
			return err
		}
		if _, err := tx.Delete(a); err != nil { // updated, then deleted: a delete
			return err
		}
		_, err = tx.Insert(Values{"tag": "e"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rev = wantChanges(t, s, rev, "8 insert 5, 8 insert 6, 8 update 3, 8 delete 1")

	// DDL is a schema change; one that rewrites index entries too.
	if err := s.AddField(ctx, Field{Name: "x", Type: String, Nullable: true}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateIndex(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	err = s.Txn(ctx, func(tx *Tx) error {
		if err := tx.DropField("x"); err != nil {
			return err
		}
		_, err := tx.Insert(Values{"tag": "f"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rev = wantChanges(t, s, rev, "9 schema, 10 schema, 11 schema, 11 insert 7")
	st, err := s.Stats(ctx)
	if err != nil || st.Revision != rev || st.OldestRevision != 0 || st.FormatVersion != FormatVersion {
		t.Errorf("Stats: revision %d, oldest %d, format %d (%v); want %d, 0, %d", st.Revision, st.OldestRevision, st.FormatVersion, err, rev, FormatVersion)
	}
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check: %v %v", err, rep.Problems)
	}
	// The last revision, asked for again: nothing, and the same revision.
	if chs, r, err := s.Changes(ctx, rev); err != nil || len(chs) != 0 || r != rev {
		t.Errorf("Changes(current) = %v, %d, %v", chs, r, err)
	}
	// Tx.Revision: the records and the revision in one snapshot.
	s.View(ctx, func(tx *Tx) error {
		if tx.Revision() != rev {
			t.Errorf("Tx.Revision %d, want %d", tx.Revision(), rev)
		}
		return nil
	})
}

// TestChangesAhead: a revision the store has not reached is not this
// store's: ErrChangesGone with the store's revision.
func TestChangesAhead(t *testing.T) {
	ctx := context.Background()
	s, _ := newFeedStore(t)
	mustInsert(t, s, Values{"tag": "a"})
	_, _, err := s.Changes(ctx, 5)
	var ge *ChangesGoneError
	if !errors.Is(err, ErrChangesGone) || !errors.As(err, &ge) || ge.Rev != 1 || ge.Since != 5 {
		t.Fatalf("Changes(5) on a store at 1: %v (%+v)", err, ge)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Op != "changes" {
		t.Errorf("not an *Error of op changes: %v", err)
	}
}

// TestChangesRetention: the log keeps the last N revisions (and fewer when
// they exceed the byte bound, the newest always), trimmed in the writing
// transaction; the bounds are the store's once a handle wrote them.
func TestChangesRetention(t *testing.T) {
	ctx := context.Background()
	s, path := newFeedStore(t, WithChangeRetention(5, 0), WithoutGroupCommit())
	for i := range 20 {
		mustInsert(t, s, Values{"tag": fmt.Sprint(i)})
	}
	_, _, err := s.Changes(ctx, 3)
	var ge *ChangesGoneError
	if !errors.As(err, &ge) || !errors.Is(err, ErrChangesGone) || ge.Oldest != 15 || ge.Rev != 20 || ge.Since != 3 {
		t.Fatalf("Changes(3) after trimming to 5: %v %+v", err, ge)
	}
	wantChanges(t, s, 15, "16 insert 16, 17 insert 17, 18 insert 18, 19 insert 19, 20 insert 20")
	st, _ := s.Stats(ctx)
	if st.OldestRevision != 15 || st.Revision != 20 {
		t.Errorf("Stats: oldest %d, revision %d", st.OldestRevision, st.Revision)
	}
	// Another handle, without the option, trims to the recorded bounds.
	s2, err := Open(ctx, path, WithoutGroupCommit())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustInsert(t, s2, Values{"tag": fmt.Sprint("x", i)})
	}
	if st, _ := s2.Stats(ctx); st.OldestRevision != 18 || st.Revision != 23 {
		t.Errorf("a handle without the option: oldest %d, revision %d, want 18, 23", st.OldestRevision, st.Revision)
	}
	// The byte bound: entries of ~60 bytes under a 100-byte bound keep
	// one; a bigger one is still kept, alone.
	s3, err := Open(ctx, path, WithChangeRetention(0, 100), WithoutGroupCommit())
	if err != nil {
		t.Fatal(err)
	}
	bulk := func(n int) {
		err := s3.Txn(ctx, func(tx *Tx) error {
			for range n {
				if _, err := tx.Insert(Values{"tag": fmt.Sprint(rand.Uint64())}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	bulk(60)
	bulk(60)
	if st, _ := s3.Stats(ctx); st.OldestRevision != st.Revision-1 {
		t.Errorf("byte bound: oldest %d, revision %d: want only the newest kept", st.OldestRevision, st.Revision)
	}
	bulk(500)
	st, _ = s3.Stats(ctx)
	chs, _ := changesAfter(t, s3, st.OldestRevision)
	if st.OldestRevision != st.Revision-1 || len(chs) != 500 {
		t.Errorf("an entry over the byte bound: oldest %d, revision %d, %d changes", st.OldestRevision, st.Revision, len(chs))
	}
	if rep, err := s3.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check: %v %v", err, rep.Problems)
	}
}

// TestChangesPaging: Changes stops after the revision that reaches its
// limit, never inside one.
func TestChangesPaging(t *testing.T) {
	ctx := context.Background()
	s, _ := newFeedStore(t, WithoutGroupCommit())
	for i := range 5 {
		s.Txn(ctx, func(tx *Tx) error {
			for j := range 2 {
				tx.Insert(Values{"tag": fmt.Sprint(i, "-", j)})
			}
			return nil
		})
	}
	s.View(ctx, func(tx *Tx) error {
		chs, rev, more, err := tx.changesSince(1, 3)
		if err != nil || rev != 3 || !more || len(chs) != 4 {
			t.Errorf("changesSince(1, limit 3) = %d changes to %d, more %v, %v; want 4 to 3, more", len(chs), rev, more, err)
		}
		chs, rev, more, err = tx.changesSince(3, 100)
		if err != nil || rev != 5 || more || len(chs) != 4 {
			t.Errorf("changesSince(3) = %d changes to %d, more %v, %v", len(chs), rev, more, err)
		}
		return nil
	})
}

// TestChangesCleanupAndBackup: Cleanup keeps the revision and the log;
// Restore moves the revision past the replaced store's and empties the
// log, so a watcher of the old history must resync.
func TestChangesCleanupAndBackup(t *testing.T) {
	ctx := context.Background()
	s, _ := newFeedStore(t)
	for i := range 3 {
		mustInsert(t, s, Values{"tag": fmt.Sprint(i)})
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	if _, err := s.BackupFile(ctx, backup); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustInsert(t, s, Values{"tag": fmt.Sprint("later", i)})
	}
	if _, err := s.Delete(ctx, 1); err != nil {
		t.Fatal(err)
	}
	before, rev := changesAfter(t, s, 0)
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	after, rev2 := changesAfter(t, s, 0)
	if rev2 != rev || !slices.Equal(before, after) {
		t.Fatalf("Cleanup changed the log: %s (to %d) → %s (to %d)", fmtChanges(before), rev, fmtChanges(after), rev2)
	}
	if err := s.Restore(ctx, backup); err != nil {
		t.Fatal(err)
	}
	cur, err := s.Revision(ctx)
	if err != nil || cur != rev+1 {
		t.Fatalf("after Restore: revision %d (%v), want %d (past the replaced store's %d)", cur, err, rev+1, rev)
	}
	for _, since := range []uint64{0, 3, rev} {
		_, _, err := s.Changes(ctx, since)
		var ge *ChangesGoneError
		if !errors.As(err, &ge) || ge.Rev != cur || ge.Oldest != cur {
			t.Errorf("Changes(%d) after Restore: %v, want ErrChangesGone at %d", since, err, cur)
		}
	}
	if n, _ := s.Len(ctx); n != 3 {
		t.Errorf("%d records after Restore, want the backup's 3", n)
	}
	id := mustInsert(t, s, Values{"tag": "after restore"})
	wantChanges(t, s, cur, fmt.Sprintf("%d insert %d", cur+1, id))
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check: %v %v", err, rep.Problems)
	}
}

// TestChangesCheck: Check finds a damaged log.
func TestChangesCheck(t *testing.T) {
	ctx := context.Background()
	cases := map[string]func(tx *bolt.Tx) error{
		"entry missing": func(tx *bolt.Tx) error { return tx.Bucket(bucketChanges).Delete(putU64(2)) },
		"entry garbage": func(tx *bolt.Tx) error { return tx.Bucket(bucketChanges).Put(putU64(2), []byte{0, 9, 1}) },
		"byte count":    func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyLogBytes, putU64(1)) },
		"beyond rev":    func(tx *bolt.Tx) error { return tx.Bucket(bucketChanges).Put(putU64(9), []byte{0, 0, 0, 0}) },
		"no log":        func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketChanges) },
		"unknown ID": func(tx *bolt.Tx) error {
			return tx.Bucket(bucketChanges).Put(putU64(3), encodeEntry(map[uint64]ChangeKind{1000: ChangeUpdate}, false))
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			s, path := newFeedStore(t, WithoutWarmReads())
			for i := range 3 {
				mustInsert(t, s, Values{"tag": fmt.Sprint(i)})
			}
			if rep, err := s.Check(ctx); err != nil || !rep.OK() {
				t.Fatalf("Check before: %v %v", err, rep.Problems)
			}
			db, err := bolt.Open(path, 0o644, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(damage); err != nil {
				t.Fatal(err)
			}
			db.Close()
			rep, err := s.Check(ctx)
			if !errors.Is(err, ErrCorrupt) || rep.OK() {
				t.Fatalf("Check of a log with %s: %v %v", name, err, rep.Problems)
			}
			t.Logf("found: %v", rep.Problems)
		})
	}
}

// TestChangeEntryCodec: entries round-trip, and no damaged entry crashes
// the decoder or decodes to more changes than it has bytes.
func TestChangeEntryCodec(t *testing.T) {
	set := map[uint64]ChangeKind{1: ChangeInsert, 2: ChangeInsert, 900: ChangeDelete, 7: ChangeUpdate, 1 << 62: ChangeUpdate, ^uint64(0): ChangeInsert}
	b := encodeEntry(set, true)
	chs, err := decodeEntry(nil, 4, b)
	if err != nil {
		t.Fatal(err)
	}
	want := "4 schema, 4 insert 1, 4 insert 2, 4 insert 18446744073709551615, 4 update 7, 4 update 4611686018427387904, 4 delete 900"
	if got := fmtChanges(chs); got != want {
		t.Errorf("round trip:\n got %s\nwant %s", got, want)
	}
	dense := map[uint64]ChangeKind{}
	for id := uint64(1000); id < 2000; id++ {
		dense[id] = ChangeInsert
	}
	if n := len(encodeEntry(dense, false)); n > 1010 {
		t.Errorf("1000 consecutive inserts take %d bytes, want about one each", n)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		d := slices.Clone(b)
		switch r.IntN(3) {
		case 0:
			d[r.IntN(len(d))] = byte(r.Uint32())
		case 1:
			d = d[:r.IntN(len(d))]
		case 2:
			d = make([]byte, r.IntN(12))
			for i := range d {
				d[i] = byte(r.Uint32())
			}
		}
		chs, err := decodeEntry(nil, 1, d)
		if err == nil && len(chs) > len(d)+1 {
			t.Fatalf("%x decodes to %d changes", d, len(chs))
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%x: %v, want ErrCorrupt", d, err)
		}
	}
	var k ChangeKind
	for _, name := range []string{"insert", "update", "delete", "schema"} {
		if err := k.UnmarshalText([]byte(name)); err != nil || k.String() != name {
			t.Errorf("ChangeKind %q: %v %v", name, k, err)
		}
	}
	if err := k.UnmarshalText([]byte("upsert")); err == nil {
		t.Error("unknown kind accepted")
	}
}

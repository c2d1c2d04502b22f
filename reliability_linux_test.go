//go:build linux

package psbase

// Reliability findings of the hostile review, each as a test of its own: the
// fix's behaviour and, where one can be built, a negative control showing the
// trap the fix avoids.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// TestNilBytesIsEmpty: a nil []byte is the empty value, stored and indexed
// as such (it once stored null and indexed an empty value).
func TestNilBytesIsEmpty(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "b.db")
	s, err := Create(ctx, db, []Field{{Name: "b", Type: Bytes, Indexed: true}, {Name: "u", Type: Bytes, Unique: true, Nullable: true}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Insert(ctx, Values{"b": []byte(nil), "u": []byte(nil)})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := s.Get(ctx, id)
	if b, ok := r.Values["b"].([]byte); !ok || b == nil || len(b) != 0 {
		t.Errorf("b = %#v, want an empty, non-nil []byte", r.Values["b"])
	}
	if n, _ := s.Count(ctx, Eq("b", []byte{})); n != 1 {
		t.Errorf("the index does not find the empty value: %d", n)
	}
	if rep, err := s.Check(ctx); err != nil {
		t.Errorf("Check: %v %v", err, rep.Problems)
	}
	// The trap: msgpack writes a nil slice as nil, which reads back as null.
	if b, _ := msgpack.Marshal([]byte(nil)); !bytes.Equal(b, []byte{0xc0}) {
		t.Errorf("negative control: msgpack encodes []byte(nil) as %x, the test assumed c0", b)
	}
}

// TestInsertRefusesTakenID: when the ID sequence is behind (a damaged
// bucket header), Insert refuses instead of overwriting a record.
func TestInsertRefusesTakenID(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	for i := range 3 {
		mustInsert(t, s, Values{"name": fmt.Sprint("r", i)})
	}
	setSequence(t, db, 1)
	h := fileHash(t, db)
	if _, err := s.Insert(ctx, Values{"name": "new"}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("insert with the sequence behind: %v, want ErrCorrupt", err)
	}
	if fileHash(t, db) != h {
		t.Error("the refused insert changed the file")
	}
	if r := mustGet(t, s, 2); r.Values["name"] != "r1" {
		t.Errorf("record 2 was overwritten: %+v", r)
	}
	rep, _ := s.Check(ctx)
	if rep.OK() {
		t.Error("Check does not report the sequence behind the records")
	}
}

func setSequence(t *testing.T, db string, seq uint64) {
	t.Helper()
	bdb, err := bolt.Open(db, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRecords).SetSequence(seq) }); err != nil {
		t.Fatal(err)
	}
}

// putRaw stores value under key in bucket of the bbolt file db.
func putRaw(t *testing.T, db string, bucket, key, value []byte) {
	t.Helper()
	bdb, err := bolt.Open(db, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, value) }); err != nil {
		t.Fatal(err)
	}
}

// deepNesting is n nested one-element arrays around a nil.
func deepNesting(n int) []byte {
	b := bytes.Repeat([]byte{0x91}, n)
	return append(b, 0xc0)
}

// TestHostileMsgpack: records and schemas with a valid CRC but hostile
// msgpack — six million nested arrays, a length prefix of 0xFFFFFFFF — are
// ErrCorrupt, read in bounded time and memory.
func TestHostileMsgpack(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	mustInsert(t, s, Values{"name": "x"})

	// A record whose retired field 99 holds 6 M nested arrays.
	var body []byte
	body = append(body, 0x92, 0x01, 0x81, 99)
	body = append(body, deepNesting(6_000_000)...)
	rec := binary.BigEndian.AppendUint32(body, recordCRC(FormatVersion, 1, body))
	putRaw(t, db, bucketRecords, idKey(1), rec)
	// A record claiming a str of 4 GiB.
	body = append([]byte{0x92, 0x01, 0x81, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff}, 'x')
	putRaw(t, db, bucketRecords, idKey(2), binary.BigEndian.AppendUint32(body, recordCRC(FormatVersion, 2, body)))
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for _, id := range []uint64{1, 2} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrCorrupt) {
			t.Errorf("record %d: %v, want ErrCorrupt", id, err)
		}
	}
	runtime.ReadMemStats(&ms1)
	if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 64<<20 {
		t.Errorf("reading hostile records allocated %d MiB", grew>>20)
	}

	// Schemas: a fields array32 of 0xFFFFFFFF, and a default nested 6 M deep.
	for name, sch := range map[string][]byte{
		"huge array": {0x81, 0xa6, 'f', 'i', 'e', 'l', 'd', 's', 0xdd, 0xff, 0xff, 0xff, 0xff},
		"deep default": append([]byte{0x81, 0xa6, 'f', 'i', 'e', 'l', 'd', 's', 0x91, 0x81,
			0xa7, 'd', 'e', 'f', 'a', 'u', 'l', 't'}, deepNesting(6_000_000)...),
	} {
		_, db := newTestStore(t)
		putRaw(t, db, bucketMeta, keySchema, sch)
		runtime.ReadMemStats(&ms0)
		if _, err := Open(ctx, db); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s schema: %v, want ErrCorrupt", name, err)
		}
		runtime.ReadMemStats(&ms1)
		if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 64<<20 {
			t.Errorf("%s schema: opening allocated %d MiB", name, grew>>20)
		}
	}

	// Negative control: msgpack's own recursive Skip dies on the nesting.
	out, err := helperCmd(t, "msgpack-skip", "").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "stack") {
		t.Errorf("negative control: msgpack.Decoder.Skip on 6 M nested arrays should overflow the stack, got %v\n%.300s", err, out)
	}
}

// TestStringsAndTimesFaithful: a String holds valid UTF-8 and a Time years
// 0000–9999, so every stored value survives any encoding (JSON export).
func TestStringsAndTimesFaithful(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	h := fileHash(t, db)
	bad := []Values{
		{"name": "bad \xff utf-8"},
		{"name": "x", "at": time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"name": "x", "at": time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, v := range bad {
		if _, err := s.Insert(ctx, v); !errors.Is(err, ErrSchema) {
			t.Errorf("insert %q: %v, want ErrSchema", v, err)
		}
	}
	if fileHash(t, db) != h {
		t.Error("refused inserts changed the file")
	}
	for _, v := range []Values{
		{"name": "ünïcødé ✓", "at": time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"name": "", "at": time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		if _, err := s.Insert(ctx, v); err != nil {
			t.Errorf("insert %q: %v", v, err)
		}
	}
}

// TestIndexKeyTooLarge: an indexed value beyond bbolt's key limit is
// ErrSchema naming the field and the limit, and nothing is written.
func TestIndexKeyTooLarge(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "k.db")
	s, err := Create(ctx, db, []Field{{Name: "k", Type: String, Indexed: true}})
	if err != nil {
		t.Fatal(err)
	}
	id := mustInsert(t, s, Values{"k": "small"})
	h := fileHash(t, db)
	big := strings.Repeat("x", 40<<10)
	_, err = s.Insert(ctx, Values{"k": big})
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), `"k"`) || !strings.Contains(err.Error(), "32760") {
		t.Errorf("insert of a 40 KiB indexed value: %v", err)
	}
	_, err = s.Update(ctx, mustGet(t, s, id), Values{"k": big})
	if !errors.Is(err, ErrSchema) {
		t.Errorf("update: %v", err)
	}
	if fileHash(t, db) != h {
		t.Error("the refused writes changed the file")
	}
	// The limit is exact: the largest allowed value goes in.
	if _, err := s.Insert(ctx, Values{"k": strings.Repeat("y", maxIndexValue-3)}); err != nil {
		t.Errorf("a value at the limit: %v", err)
	}
}

// flipRecordByte damages one byte of a record's value in place. The store
// must hold the value once (freshly compacted: no stale page copies).
func flipRecordByte(t *testing.T, db string, id uint64) {
	t.Helper()
	bdb, err := bolt.Open(db, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v []byte
	bdb.View(func(tx *bolt.Tx) error { v = bytes.Clone(tx.Bucket(bucketRecords).Get(idKey(id))); return nil })
	bdb.Close()
	raw, _ := os.ReadFile(db)
	if n := bytes.Count(raw, v); n != 1 {
		t.Fatalf("record bytes found %d times in the file, want once", n)
	}
	i := bytes.Index(raw, v)
	raw[i+2] ^= 0x40
	if err := os.WriteFile(db, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCleanupRefusesDamaged: Cleanup of a store Check finds damaged refuses
// and leaves the file as it was (it once rewrote it, dropping what bbolt
// could not read).
func TestCleanupRefusesDamaged(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	for i := range 50 {
		mustInsert(t, s, Values{"name": fmt.Sprint("record-", i)})
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	flipRecordByte(t, db, 17)
	h := fileHash(t, db)
	if _, err := s.Cleanup(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Cleanup of a damaged store: %v, want ErrCorrupt", err)
	}
	if fileHash(t, db) != h {
		t.Error("Cleanup changed the damaged file")
	}
	if _, err := os.Stat(db + suffixCompact); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a compacted copy was left behind")
	}
}

// TestCleanupKeepsOwner: Cleanup run by root keeps the store's owner, group
// and mode; a user who could not keep them is refused before anything is
// written.
func TestCleanupKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx := context.Background()
	dir := worldDir(t)
	db := filepath.Join(dir, "owned.db")
	s, err := Create(ctx, db, testFields)
	if err != nil {
		t.Fatal(err)
	}
	mustInsert(t, s, Values{"name": "x"})
	for _, p := range []string{db, db + suffixLock, db + suffixGate} {
		os.Chown(p, 65534, 65534)
	}
	os.Chmod(db, 0o640)
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(db)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o640 {
		t.Errorf("after root's Cleanup: owner %d:%d mode %v, want 65534:65534 -rw-r-----", st.Uid, st.Gid, fi.Mode().Perm())
	}
	// Negative control: the file root creates for the copy is root's.
	f, _ := os.Create(filepath.Join(dir, "rootfile"))
	nfi, _ := f.Stat()
	f.Close()
	if nfi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Error("negative control: root's new file is not root's; the test proves nothing")
	}
	// A third user (not owner, not root): refused, nothing written.
	os.Chmod(db, 0o666)
	h := fileHash(t, db)
	res := runStoreHelperAs(t, "cleanup", db, 12345)
	if !strings.Contains(res["cleanup"], "readonly=true") {
		t.Errorf("Cleanup by a non-owner: %s, want ErrReadOnly", res["cleanup"])
	}
	if fileHash(t, db) != h {
		t.Error("the refused Cleanup changed the file")
	}
	if _, err := os.Stat(db + suffixCompact); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the refused Cleanup left a copy")
	}
}

// TestStoreThroughLinks: a symbolic link is followed once — Cleanup and
// Destroy work on the file, writes through either name are one store — and
// a hard-linked store, a FIFO, a dangling link are refused with
// ErrUnsafePath.
func TestStoreThroughLinks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	real := filepath.Join(dir, "real.db")
	link := filepath.Join(dir, "link.db")
	sr, err := Create(ctx, real, testFields)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	sl, err := Open(ctx, link)
	if err != nil {
		t.Fatal(err)
	}
	if sl.Path() != real {
		t.Errorf("Path through the link = %s, want %s", sl.Path(), real)
	}
	mustInsert(t, sl, Values{"name": "via link"})
	if _, err := sl.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Cleanup through the link replaced the link: %v %v", fi, err)
	}
	mustInsert(t, sl, Values{"name": "after cleanup"})
	if n, _ := sr.Len(ctx); n != 2 {
		t.Errorf("the store through its own name has %d records, want 2 (a fork?)", n)
	}
	if _, err := os.Stat(link + suffixLock); !errors.Is(err, fs.ErrNotExist) {
		t.Error("lock files were made beside the link")
	}
	if err := sl.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(real); !errors.Is(err, fs.ErrNotExist) {
		t.Error("Destroy through the link left the store")
	}

	// A hard link: two names, two lock files — refused.
	hard := filepath.Join(dir, "hard.db")
	if _, err := Create(ctx, real, testFields); err != nil {
		t.Fatal(err)
	}
	os.Link(real, hard)
	for _, p := range []string{real, hard} {
		if _, err := Open(ctx, p); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Open of a hard-linked store %s: %v, want ErrUnsafePath", p, err)
		}
	}
	os.Remove(hard)

	// A FIFO where the store should be: refused at once, no hang.
	fifo := filepath.Join(dir, "fifo.db")
	syscall.Mkfifo(fifo, 0o644)
	done := make(chan error, 1)
	go func() { _, err := Open(ctx, fifo); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Open of a FIFO: %v, want ErrUnsafePath", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open of a FIFO hangs")
	}

	// A dangling link: Create would write wherever it points.
	dangling := filepath.Join(dir, "dangling.db")
	os.Symlink(filepath.Join(dir, "elsewhere", "x.db"), dangling)
	if _, err := Create(ctx, dangling, testFields); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("Create through a dangling link: %v, want ErrUnsafePath", err)
	}
}

// TestHalfMadeStores: what an interrupted Create of an older psbase left (an
// empty file, a bbolt file with no bucket) is no store: Open says so with
// ErrNotExist, Create and Open(WithCreate) replace it; a foreign file stays.
func TestHalfMadeStores(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o644)
	bare := filepath.Join(dir, "bare.db")
	bdb, _ := bolt.Open(bare, 0o644, nil)
	bdb.Close()
	for _, p := range []string{empty, bare} {
		if _, err := Open(ctx, p); !errors.Is(err, ErrNotExist) {
			t.Errorf("Open %s: %v, want ErrNotExist", filepath.Base(p), err)
		}
	}
	if _, err := Open(ctx, empty, WithCreate(testFields)); err != nil {
		t.Errorf("Open(WithCreate) over an empty file: %v", err)
	}
	if _, err := Create(ctx, bare, testFields); err != nil {
		t.Errorf("Create over a bare bbolt file: %v", err)
	}
	foreign := filepath.Join(dir, "foreign.db")
	os.WriteFile(foreign, []byte("my notes"), 0o644)
	if _, err := Create(ctx, foreign, testFields); !errors.Is(err, ErrExists) {
		t.Errorf("Create over a foreign file: %v, want ErrExists", err)
	}
	// Killed between linking the new store in and removing its
	// <db>.creating name (found by TestCreateKilled): the store is
	// complete and opens; the leftover name goes. Any other second name
	// is still refused (TestStoreThroughLinks).
	linked := filepath.Join(dir, "linked.db")
	ls, err := Create(ctx, linked, testFields)
	if err != nil {
		t.Fatal(err)
	}
	id := mustInsert(t, ls, Values{"name": "kept"})
	if err := os.Link(linked, linked+suffixCreating); err != nil {
		t.Fatal(err)
	}
	for _, lazy := range []bool{true, false} {
		opts := []Option{}
		if lazy {
			opts = append(opts, WithLazyOpen())
		}
		s, err := Open(ctx, linked, opts...)
		if err == nil {
			var rec Record
			rec, err = s.Get(ctx, id)
			if err == nil && rec.Values["name"] != "kept" {
				err = fmt.Errorf("record %v", rec.Values)
			}
		}
		if err != nil {
			t.Errorf("Open (lazy %v) of a store with its leftover %s name: %v", lazy, suffixCreating, err)
		}
		if _, err := os.Lstat(linked + suffixCreating); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the leftover %s name is still there: %v", suffixCreating, err)
		}
		os.Link(linked, linked+suffixCreating)
	}
}

// TestCreateKilled: SIGKILL at random instants during Create, Create with
// WithOverwrite and Open(WithCreate): afterwards there is the old store or a
// complete new one, and Open(WithCreate) always works.
func TestCreateKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 60 child processes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	rounds := 60
	if f := flag.Lookup("storm.long"); f != nil && f.Value.String() == "true" {
		rounds = 400
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range rounds {
		db := filepath.Join(dir, fmt.Sprintf("s%d.db", round%4))
		mode := []string{"overwrite", "open-create", "create"}[round%3]
		// Wait for the loop to run, then kill at a random instant in it.
		cmd, line := startLooping(t, "create-"+mode, db)
		if line != "looping\n" {
			t.Fatalf("round %d: helper said %q", round, line)
		}
		time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()
		s, err := Open(ctx, db, WithCreate(testFields))
		if err != nil {
			t.Fatalf("round %d (%s): Open(WithCreate) after a kill: %v", round, mode, err)
		}
		if rep, err := s.Check(ctx); err != nil {
			t.Fatalf("round %d (%s): %v %v", round, mode, err, rep.Problems)
		}
		fields, _ := s.Schema(ctx)
		if len(fields) != len(testFields) && len(fields) != 1 {
			t.Fatalf("round %d: a schema of %d fields, neither the old nor a new one", round, len(fields))
		}
	}
}

// startLooping starts the helper in mode on db and returns it with the
// first line it printed ("looping" once its loop runs); on anything else
// the helper is killed before the line is returned.
func startLooping(t *testing.T, mode, db string) (*exec.Cmd, string) {
	t.Helper()
	cmd := helperCmd(t, mode, db)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "looping\n" {
		cmd.Process.Kill()
		cmd.Wait()
	}
	return cmd, line
}

// helperCmd runs TestStoreHelperProcess in mode on db.
func helperCmd(t *testing.T, mode, db string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), storeHelperEnv+"="+mode, "PSBASE_STORE_DB="+db)
	return cmd
}

// worldDir is a temporary directory every user may enter and write (t.TempDir
// is inside a directory only its owner may enter).
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "psbase-world-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runStoreHelperAs is runStoreHelper as any uid.
func runStoreHelperAs(t *testing.T, mode, db string, uid uint32) map[string]string {
	t.Helper()
	exe := filepath.Join(worldDir(t), "psbase-store.test")
	b, _ := os.ReadFile(os.Args[0])
	os.WriteFile(exe, b, 0o755)
	cmd := exec.Command(exe, "-test.run=^TestStoreHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), storeHelperEnv+"="+mode, "PSBASE_STORE_DB="+db)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	res := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "storeresult "); ok {
			k, v, _ := strings.Cut(s, " ")
			res[k] = v
		}
	}
	return res
}

// craftCycle makes every branch page of db point its first child at itself:
// a B+tree cycle, which bbolt's cursor and check recurse on until the stack
// overflows (or forever).
func craftCycle(t *testing.T, db string) {
	t.Helper()
	raw, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	ps := int(binary.LittleEndian.Uint32(raw[24:]))
	n := 0
	for off := 2 * ps; off+ps <= len(raw); off += ps {
		if binary.LittleEndian.Uint16(raw[off+8:]) == 0x01 && binary.LittleEndian.Uint16(raw[off+10:]) > 1 {
			binary.LittleEndian.PutUint64(raw[off+16+8:], uint64(off/ps))
			n++
		}
	}
	if n == 0 {
		t.Fatal("no branch page to make a cycle of")
	}
	if err := os.WriteFile(db, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRecover: Recover salvages every readable record of a damaged store
// (IDs, versions, indexes, the sequence), lists what it lost, and never
// writes the damaged file.
func TestRecover(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	if err := s.CreateIndex(ctx, "name", Unique()); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]Record{}
	for i := range 300 {
		id := mustInsert(t, s, Values{"name": fmt.Sprintf("record-%03d", i), "n": int64(i)})
		if i%10 == 0 {
			rec, _ := s.Get(ctx, id)
			if _, err := s.Update(ctx, rec, Values{"score": 1.5}); err != nil {
				t.Fatal(err)
			}
		}
	}
	recs, _ := s.Select(ctx, Query{})
	for _, r := range recs {
		want[r.ID] = r
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	flipRecordByte(t, db, 7)
	h := fileHash(t, db)
	if _, err := s.Check(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("check of the damaged store: %v", err)
	}
	out := filepath.Join(t.TempDir(), "recovered.db")
	rep, err := Recover(ctx, db, out)
	if err != nil {
		t.Fatal(err)
	}
	if fileHash(t, db) != h {
		t.Error("Recover changed the damaged file")
	}
	if rep.Recovered != 299 || len(rep.Lost) != 1 || rep.Lost[0].ID != 7 || rep.NextID != 300 {
		t.Errorf("report: %d recovered, lost %v, next ID %d; want 299, record 7, 300", rep.Recovered, rep.Lost, rep.NextID)
	}
	r, err := Open(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if crep, err := r.Check(ctx); err != nil {
		t.Fatalf("check of the recovered store: %v %v", err, crep.Problems)
	}
	got, _ := r.Select(ctx, Query{})
	for _, g := range got {
		w := want[g.ID]
		if g.Version != w.Version || fmt.Sprint(g.Values) != fmt.Sprint(w.Values) {
			t.Errorf("record %d: %v v%d, want %v v%d", g.ID, g.Values, g.Version, w.Values, w.Version)
		}
	}
	if _, err := r.Insert(ctx, Values{"name": "record-005"}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("the unique index was not rebuilt: %v", err)
	}
	if id, err := r.Insert(ctx, Values{"name": "new"}); err != nil || id != 301 {
		t.Errorf("next insert: %d %v, want 301", id, err)
	}
	if _, err := Recover(ctx, db, out); !errors.Is(err, ErrExists) {
		t.Errorf("Recover over an existing store: %v, want ErrExists", err)
	}
	if _, err := Recover(ctx, db, db); !errors.Is(err, ErrExists) {
		t.Errorf("Recover onto itself: %v, want ErrExists", err)
	}
}

// TestCheckAndRecoverSurviveCycle: a B+tree cycle, which bbolt recurses on
// until its stack overflows, is reported by Check and skipped by Recover in
// this very process. The negative control: bbolt's own Tx.Check on that
// file, in a child process, does not come back.
func TestCheckAndRecoverSurviveCycle(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	for i := range 400 {
		mustInsert(t, s, Values{"name": fmt.Sprintf("record-%03d-%s", i, strings.Repeat("x", 40))})
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	craftCycle(t, db)
	h := fileHash(t, db)
	rep, err := s.Check(ctx)
	if !errors.Is(err, ErrCorrupt) || len(rep.Problems) == 0 {
		t.Fatalf("check: %v %v", err, rep.Problems)
	}
	if _, err := s.Cleanup(ctx); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Cleanup of a cyclic store: %v, want ErrCorrupt", err)
	}
	rrep, err := Recover(ctx, db, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rrep.Damage) == 0 || rrep.Recovered >= 400 {
		t.Errorf("recover: %d recovered, damage %v", rrep.Recovered, rrep.Damage)
	}
	if fileHash(t, db) != h {
		t.Error("the damaged file was changed")
	}

	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, os.Args[0], "-test.run=^TestStoreHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), storeHelperEnv+"=bbolt-check", "PSBASE_STORE_DB="+db)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("negative control: bbolt's own check came back on the cycle: %s", out)
	}
}

// TestAbandonedHandleReleasesFile: after bbolt panics on a damaged page
// (a branch pointing at a wild page id), the abandoned read handle must not
// keep bbolt's flock: a mapping holds the open file description, so closing
// the descriptor is not enough. A later write in the same process reaches
// the file (it succeeds, or gets ErrCorrupt; never bbolt's lock timeout). The negative
// control keeps the mapping: the write then times out on bbolt's flock.
func TestAbandonedHandleReleasesFile(t *testing.T) {
	ctx := context.Background()
	for _, keep := range []bool{false, true} {
		// Cold reads: a kept (warm) read handle drops bbolt's flock anyway.
		s, db := newTestStore(t, WithBoltTimeout(300*time.Millisecond), WithoutWarmReads())
		for i := range 400 {
			mustInsert(t, s, Values{"name": fmt.Sprintf("record-%03d-%s", i, strings.Repeat("x", 40))})
		}
		if _, err := s.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(db)
		ps := int(binary.LittleEndian.Uint32(raw[24:]))
		for off := 2 * ps; off+ps <= len(raw); off += ps {
			if binary.LittleEndian.Uint16(raw[off+8:]) == 0x01 {
				binary.LittleEndian.PutUint64(raw[off+16+8:], 0xFFFF)
			}
		}
		os.WriteFile(db, raw, 0o644)
		s.cfg.weak.keepMap = keep
		if _, err := s.Get(ctx, 1); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("get on a wild page id: %v, want ErrCorrupt", err)
		}
		_, err := s.Insert(ctx, Values{"name": "after"})
		timedOut := errors.Is(err, ErrLockTimeout)
		switch {
		case !keep && err != nil && (timedOut || !errors.Is(err, ErrCorrupt)):
			t.Errorf("write after an abandoned read: %v, want success or ErrCorrupt", err)
		case keep && !timedOut:
			t.Errorf("negative control: with the mapping kept the write got %v, not bbolt's lock timeout: the test proves nothing", err)
		}
	}
}

package psbase

// Tests of the on-disk format: a store written by an independent encoder that
// follows FORMAT.md only (raw bbolt, msgpack bytes made by hand here, never
// psbase's encoders), format versions, upgrades, and what an older psbase
// does on a newer store.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// mp is a tiny hand-written msgpack encoder for the tests (FORMAT.md's
// forms, written out byte by byte).
type mp struct{ b []byte }

func (m *mp) raw(b ...byte) *mp { m.b = append(m.b, b...); return m }
func (m *mp) str(s string) *mp {
	switch {
	case len(s) < 32:
		m.raw(0xa0 | byte(len(s)))
	default:
		m.raw(0xda, byte(len(s)>>8), byte(len(s)))
	}
	return m.raw([]byte(s)...)
}
func (m *mp) bin(b []byte) *mp { m.raw(0xc4, byte(len(b))); return m.raw(b...) }
func (m *mp) uint(v uint64) *mp {
	if v < 128 {
		return m.raw(byte(v))
	}
	m.raw(0xcf)
	return m.raw(binary.BigEndian.AppendUint64(nil, v)...)
}
func (m *mp) int64(v int64) *mp {
	m.raw(0xd3)
	return m.raw(binary.BigEndian.AppendUint64(nil, uint64(v))...)
}
func (m *mp) float(f float64) *mp {
	m.raw(0xcb)
	return m.raw(binary.BigEndian.AppendUint64(nil, math.Float64bits(f))...)
}
func (m *mp) time(t time.Time) *mp { // the 12-byte timestamp form
	m.raw(0xc7, 12, 0xff)
	m.raw(binary.BigEndian.AppendUint32(nil, uint32(t.Nanosecond()))...)
	return m.raw(binary.BigEndian.AppendUint64(nil, uint64(t.Unix()))...)
}
func (m *mp) arr(n int) *mp  { return m.raw(0x90 | byte(n)) }
func (m *mp) fmap(n int) *mp { return m.raw(0x80 | byte(n)) }

// handRecord is a record value per FORMAT.md.
func handRecord(format uint32, id, version uint64, fields func(*mp) int) []byte {
	var vals mp
	n := fields(&vals)
	var body mp
	body.arr(2).uint(version).fmap(n).raw(vals.b...)
	tab := crc32.MakeTable(crc32.Castagnoli)
	var sum uint32
	if format >= 2 {
		sum = crc32.Update(crc32.Checksum(binary.BigEndian.AppendUint64(nil, id), tab), tab, body.b)
	} else {
		sum = crc32.Checksum(body.b, tab)
	}
	return binary.BigEndian.AppendUint32(body.b, sum)
}

// handStore writes a store per FORMAT.md with raw bbolt: fields name
// (string, unique index), n (int), x (float), ok (bool), at (time, nullable),
// b (bytes); records 1 and 2; minRead/minWrite only from format 2 on.
func handStore(t *testing.T, path string, format, minRead, minWrite uint32) {
	t.Helper()
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket([]byte("psbase"))
		recs, _ := tx.CreateBucket([]byte("records"))
		ixs, _ := tx.CreateBucket([]byte("indexes"))
		nameIx, _ := ixs.CreateBucket([]byte("name"))
		u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
		meta.Put([]byte("format"), u32(format))
		if format >= 2 {
			meta.Put([]byte("min_read"), u32(minRead))
			meta.Put([]byte("min_write"), u32(minWrite))
		}
		meta.Put([]byte("count"), binary.BigEndian.AppendUint64(nil, 2))
		meta.Put([]byte("created"), []byte("2024-01-01T00:00:00Z"))
		var sch mp
		field := func(num uint64, name, typ string, def func(*mp), nullable bool) {
			sch.fmap(5).str("num").uint(num).str("name").str(name)
			sch.str("type").str(typ) // a str, not the bin psbase writes: both are read
			sch.str("default")
			def(&sch)
			sch.str("nullable").raw(map[bool]byte{false: 0xc2, true: 0xc3}[nullable])
		}
		sch.fmap(3).str("fields").arr(6)
		field(1, "name", "string", func(m *mp) { m.str("") }, false)
		field(2, "n", "int", func(m *mp) { m.int64(42) }, false)
		field(3, "x", "float", func(m *mp) { m.float(0) }, false)
		field(4, "ok", "bool", func(m *mp) { m.raw(0xc2) }, false)
		field(5, "at", "time", func(m *mp) { m.raw(0xc0) }, true)
		field(6, "b", "bytes", func(m *mp) { m.bin(nil) }, false)
		sch.str("next_num").uint(8) // number 7 was retired
		sch.str("indexes").arr(1).fmap(3).str("field").str("name").str("num").uint(1).str("unique").raw(0xc3)
		meta.Put([]byte("schema"), sch.b)
		r1 := handRecord(format, 1, 3, func(m *mp) int {
			m.uint(1).str("alpha").uint(2).int64(-5).uint(3).float(2.5).uint(4).raw(0xc3)
			m.uint(5).time(at).uint(6).bin([]byte{0, 1, 2})
			m.uint(7).str("a retired field's value")
			return 7
		})
		r2 := handRecord(format, 2, 1, func(m *mp) int { m.uint(1).str("beta"); return 1 })
		recs.Put(binary.BigEndian.AppendUint64(nil, 1), r1)
		recs.Put(binary.BigEndian.AppendUint64(nil, 2), r2)
		recs.SetSequence(2)
		for id, name := range map[uint64]string{1: "alpha", 2: "beta"} {
			k := append([]byte{1}, name...)
			k = append(k, 0, 1)
			nameIx.Put(binary.BigEndian.AppendUint64(k, id), []byte{})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFormatIndependentEncoder(t *testing.T) {
	ctx := context.Background()
	for _, format := range []uint32{1, 2} {
		path := filepath.Join(t.TempDir(), "hand.db")
		handStore(t, path, format, 2, 2)
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("format %d: %v", format, err)
		}
		r1, err := s.Get(ctx, 1)
		if err != nil {
			t.Fatalf("format %d: %v", format, err)
		}
		want := Values{"name": "alpha", "n": int64(-5), "x": 2.5, "ok": true,
			"at": time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC), "b": []byte{0, 1, 2}}
		if r1.Version != 3 || len(r1.Values) != len(want) {
			t.Errorf("format %d: record 1 = %+v", format, r1)
		}
		for k, v := range want {
			if !valuesEqual(r1.Values[k], v) {
				t.Errorf("format %d: %s = %#v, want %#v", format, k, r1.Values[k], v)
			}
		}
		r2, err := s.GetBy(ctx, "name", "beta")
		if err != nil || r2.ID != 2 || r2.Values["n"] != int64(42) || r2.Values["at"] != nil || len(r2.Values["b"].([]byte)) != 0 {
			t.Errorf("format %d: record 2 = %+v, %v (defaults: n 42, at null, b empty)", format, r2, err)
		}
		if rep, err := s.Check(ctx); err != nil {
			t.Errorf("format %d: Check of a hand-made store: %v %v", format, err, rep.Problems)
		}
		// psbase writes it in its own format (format 2 gains the change
		// log, format 4, at its first write) and it stays sound.
		if _, err := s.Insert(ctx, Values{"name": "gamma"}); err != nil {
			t.Fatal(err)
		}
		st, _ := s.Stats(ctx)
		if want := map[uint32]int{1: 1, 2: 4}[format]; st.FormatVersion != want {
			t.Errorf("format %d store reports format %d after a write, want %d", format, st.FormatVersion, want)
		}
		if _, err := s.Check(ctx); err != nil {
			t.Errorf("format %d: Check after a write: %v", format, err)
		}
	}
}

func valuesEqual(a, b any) bool {
	if x, ok := a.([]byte); ok {
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	if x, ok := a.(time.Time); ok {
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	return a == b
}

// moveRecord copies record from's stored value under the key of record to,
// as a stale page in the wrong place would.
func moveRecord(t *testing.T, path string, from, to uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("records"))
		v := bytes.Clone(b.Get(idKey(from)))
		return b.Put(idKey(to), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFormatCRCCoversID: in format 2 a record's value under another record's
// key fails its CRC; in format 1 it does not (the negative control: the
// weakness format 2 removed), and Cleanup upgrades a format 1 store.
func TestFormatCRCCoversID(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	v2 := filepath.Join(dir, "v2.db")
	handStore(t, v2, 2, 2, 2)
	moveRecord(t, v2, 1, 2)
	s2, _ := Open(ctx, v2)
	if _, err := s2.Get(ctx, 2); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 2: a record moved under another ID read back with %v, want ErrCorrupt", err)
	}

	v1 := filepath.Join(dir, "v1.db")
	handStore(t, v1, 1, 0, 0)
	moveRecord(t, v1, 1, 2)
	s1, _ := Open(ctx, v1)
	if r, err := s1.Get(ctx, 2); err != nil || r.Values["name"] != "alpha" {
		t.Errorf("negative control: format 1 should accept the moved record (its CRC ignores the ID), got %+v %v", r, err)
	}

	// Upgrade: a sound format 1 store becomes the newest format by Cleanup, records intact.
	up := filepath.Join(dir, "up.db")
	handStore(t, up, 1, 0, 0)
	s, _ := Open(ctx, up)
	before, _ := s.Select(ctx, Query{})
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats(ctx)
	after, _ := s.Select(ctx, Query{})
	if st.FormatVersion != FormatVersion || len(after) != len(before) {
		t.Fatalf("after Cleanup: format %d, %d records (want %d, %d)", st.FormatVersion, len(after), FormatVersion, len(before))
	}
	for i := range before {
		if before[i].ID != after[i].ID || before[i].Version != after[i].Version || before[i].Values["name"] != after[i].Values["name"] {
			t.Errorf("record %d changed by the upgrade: %+v → %+v", before[i].ID, before[i], after[i])
		}
	}
	if _, err := s.Check(ctx); err != nil {
		t.Error(err)
	}
	moveRecord(t, up, 1, 2)
	if _, err := s.Get(ctx, 2); !errors.Is(err, ErrCorrupt) {
		t.Errorf("upgraded store accepts a moved record: %v", err)
	}
}

// TestNewerFormatRefused: a store needing a newer psbase is refused with
// ErrNewerFormat (not ErrCorrupt), unchanged; one whose newer format still
// lets this version read is read but not written.
func TestNewerFormatRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "newer.db")
	handStore(t, p, FormatVersion+1, FormatVersion+1, FormatVersion+1)
	h := fileHash(t, p)
	if _, err := Open(ctx, p); !errors.Is(err, ErrNewerFormat) || errors.Is(err, ErrCorrupt) {
		t.Errorf("Open of a newer store needing a newer psbase: %v, want ErrNewerFormat only", err)
	}
	s, err := Open(ctx, p, WithLazyOpen())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctx, Values{"name": "x"}); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("Insert: %v", err)
	}
	if _, err := s.Cleanup(ctx); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("Cleanup: %v", err)
	}
	if fileHash(t, p) != h {
		t.Error("the newer store was changed")
	}

	q := filepath.Join(dir, "readable.db")
	handStore(t, q, FormatVersion+1, FormatVersion, FormatVersion+1)
	h = fileHash(t, q)
	s, err = Open(ctx, q)
	if err != nil {
		t.Fatalf("a newer store readable by this format: %v", err)
	}
	if _, err := s.Get(ctx, 1); err != nil {
		t.Errorf("read: %v", err)
	}
	if _, err := s.Insert(ctx, Values{"name": "x"}); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("write into a store needing a newer writer: %v", err)
	}
	if fileHash(t, q) != h {
		t.Error("the store was changed")
	}
}

// formatOneCommit is the last release of format 1: its psbase must refuse a
// format 2 store without changing it (FORMAT.md).
const formatOneCommit = "fe991cb"

// TestOlderPsbaseOnNewerStore builds the format 1 release's CLI from the
// repository's history and runs it on a store of the newest format.
func TestOlderPsbaseOnNewerStore(t *testing.T) {
	bin, dir := buildRelease(t, formatOneCommit)
	db := filepath.Join(dir, "new.db")
	s, err := Create(context.Background(), db, []Field{{Name: "name", Type: String}})
	if err != nil {
		t.Fatal(err)
	}
	s.Insert(context.Background(), Values{"name": "x"})
	h := fileHash(t, db)
	for _, args := range [][]string{{"get", db, "1"}, {"insert", db, "name=y"}, {"cleanup", db}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		var ee *exec.ExitError
		want := fmt.Sprintf("format version %d is not supported", FormatVersion)
		if !errors.As(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(string(out), want) {
			t.Errorf("psbase %s %v: %v\n%s\nwant exit 7 and %q", formatOneCommit, args, err, out, want)
		}
	}
	if fileHash(t, db) != h {
		t.Error("the older psbase changed the newer store")
	}
}

// buildRelease builds the CLI of an older commit from the repository's
// history, into a temporary directory it returns too.
func buildRelease(t *testing.T, commit string) (bin, dir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds an older psbase from git history")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git: cannot build the older release")
	}
	if err := exec.Command(git, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		t.Skipf("commit %s is not in this checkout's history (a shallow clone?)", commit)
	}
	dir = t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	arch := exec.Command("sh", "-c", git+" archive "+commit+" | tar -x -C "+src)
	if out, err := arch.CombinedOutput(); err != nil {
		t.Fatalf("git archive: %v\n%s", err, out)
	}
	bin = filepath.Join(dir, "psbase-"+commit)
	build := exec.Command("go", "build", "-o", bin, "./cmd/psbase")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building psbase %s: %v\n%s", commit, err, out)
	}
	return bin, dir
}

// TestRecordCRCIsCRC32COfKeyAndBody: recordCRC's hand-rolled pass over the
// key is the CRC32C of the 8-byte key followed by the body, as FORMAT.md
// states, and costs no allocation. A checksum of the body alone (format 1's)
// must differ: the control that this test compares real checksums.
func TestRecordCRCIsCRC32COfKeyAndBody(t *testing.T) {
	body := []byte("\x92\x01\x81\x01\xa5alpha")
	for _, id := range []uint64{0, 1, 2, 255, 256, 1 << 32, 0x0123456789abcdef, ^uint64(0)} {
		want := crc32.Checksum(append(idKey(id), body...), castagnoli)
		if got := recordCRC(FormatVersion, id, body); got != want {
			t.Errorf("id %d: recordCRC %08x, CRC32C(key‖body) %08x", id, got, want)
		}
		if recordCRC(1, id, body) == want {
			t.Errorf("id %d: format 1's checksum equals format 2's: the comparison is blind", id)
		}
	}
	if n := testing.AllocsPerRun(100, func() { recordCRC(FormatVersion, 7, body) }); n != 0 {
		t.Errorf("recordCRC allocates %.0f times per call", n)
	}
}

package boltwalk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const testPageSize = 4096

// buildDB creates a bbolt file in dir, runs each step in its own update
// transaction and returns the file's bytes.
func buildDB(t testing.TB, dir string, noFreelistSync bool, steps ...func(tx *bolt.Tx) error) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("db%d.bolt", time.Now().UnixNano()))
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: testPageSize, NoFreelistSync: noFreelistSync})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if err := db.Update(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

func val(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*31 + j*7)
	}
	return b
}

// richSteps fills a store with a deep "records" tree, large values with
// overflow pages, nested, inline and empty buckets and sequences, then
// deletes enough to leave a non-empty freelist.
func richSteps() []func(tx *bolt.Tx) error {
	return []func(tx *bolt.Tx) error{
		func(tx *bolt.Tx) error {
			r, err := tx.CreateBucket([]byte("records"))
			if err != nil {
				return err
			}
			for i := 0; i < 20000; i++ {
				if err := r.Put(fmt.Appendf(nil, "k%08d", i), val(i, 100)); err != nil {
					return err
				}
			}
			for i := 0; i < 3; i++ {
				if err := r.Put(fmt.Appendf(nil, "z-large-%d", i), val(i, 20000+i)); err != nil {
					return err
				}
			}
			if err := r.SetSequence(42); err != nil {
				return err
			}
			m, err := tx.CreateBucket([]byte("meta"))
			if err != nil {
				return err
			}
			x, err := m.CreateBucket([]byte("x"))
			if err != nil {
				return err
			}
			for i := 0; i < 500; i++ {
				if err := x.Put(fmt.Appendf(nil, "x%05d", i), val(i, 50)); err != nil {
					return err
				}
			}
			for i := 0; i < 3; i++ {
				if _, err := x.NextSequence(); err != nil {
					return err
				}
			}
			inl, err := m.CreateBucket([]byte("inl"))
			if err != nil {
				return err
			}
			if err := inl.Put([]byte("a"), []byte("1")); err != nil {
				return err
			}
			if err := inl.Put([]byte("b"), []byte("2")); err != nil {
				return err
			}
			if _, err := m.CreateBucket([]byte("empty")); err != nil {
				return err
			}
			if err := m.Put([]byte("version"), []byte("2")); err != nil {
				return err
			}
			s, err := tx.CreateBucket([]byte("small"))
			if err != nil {
				return err
			}
			return s.Put([]byte("only"), []byte("value"))
		},
		func(tx *bolt.Tx) error {
			r := tx.Bucket([]byte("records"))
			for i := 0; i < 20000; i += 3 {
				if err := r.Delete(fmt.Appendf(nil, "k%08d", i)); err != nil {
					return err
				}
			}
			return r.Delete([]byte("z-large-1"))
		},
	}
}

func richFile(t testing.TB, noFreelistSync bool) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	path, data := buildDB(t, dir, noFreelistSync, richSteps()...)
	return path, data
}

// boltTruth opens path with bbolt and returns its view: check errors,
// high-water mark, free pages, tree pages, and every entry of the buckets
// at the given paths.
type truth struct {
	checkErrs []error
	hwm       uint64
	free      int
	treePages int
	depth     int
	entries   map[string][]entry
	seqs      map[string]uint64
}

type entry struct {
	k, v     []byte
	isBucket bool
}

func boltTruth(t *testing.T, path string, noFreelistSync bool, paths [][][]byte) truth {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: noFreelistSync})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tr := truth{entries: map[string][]entry{}, seqs: map[string]uint64{}}
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			tr.checkErrs = append(tr.checkErrs, e)
		}
		tr.hwm = uint64(tx.Size()) / uint64(db.Info().PageSize)
		st := tx.Cursor().Bucket().Stats()
		tr.treePages = st.BranchPageN + st.BranchOverflowN + st.LeafPageN + st.LeafOverflowN
		tr.depth = tx.Bucket([]byte("records")).Stats().Depth
		for _, p := range paths {
			b := tx.Cursor().Bucket()
			for _, c := range p {
				b = b.Bucket(c)
			}
			name := string(bytes.Join(p, []byte("/")))
			tr.seqs[name] = b.Sequence()
			var es []entry
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				es = append(es, entry{bytes.Clone(k), bytes.Clone(v), v == nil})
			}
			tr.entries[name] = es
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.free = db.Stats().FreePageN
	return tr
}

func leafEntries(t *testing.T, data []byte, path [][]byte) ([]entry, *Report) {
	t.Helper()
	var es []entry
	rep, err := Leaf(bytes.NewReader(data), int64(len(data)), Limits{}, path, func(k, v []byte, isBucket bool) error {
		es = append(es, entry{bytes.Clone(k), bytes.Clone(v), isBucket})
		return nil
	})
	if err != nil {
		t.Fatalf("Leaf(%q): %v", path, err)
	}
	return es, rep
}

var testPaths = [][][]byte{
	nil,
	{[]byte("records")},
	{[]byte("meta")},
	{[]byte("meta"), []byte("x")},
	{[]byte("meta"), []byte("inl")},
	{[]byte("meta"), []byte("empty")},
	{[]byte("small")},
}

func TestRealFiles(t *testing.T) {
	for _, nfs := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoFreelistSync=%v", nfs), func(t *testing.T) {
			path, data := richFile(t, nfs)
			tr := boltTruth(t, path, nfs, testPaths)
			if len(tr.checkErrs) > 0 {
				t.Fatalf("bbolt check: %v", tr.checkErrs)
			}
			if tr.depth < 3 {
				t.Fatalf("records tree depth %d, want >= 3", tr.depth)
			}
			rep := Check(bytes.NewReader(data), int64(len(data)), Limits{})
			if !rep.OK() || len(rep.Notes) > 0 {
				t.Fatalf("Check: problems %v notes %v", rep.Problems, rep.Notes)
			}
			if rep.PageSize != testPageSize || rep.HighWater != tr.hwm {
				t.Fatalf("page size %d hwm %d, bbolt hwm %d", rep.PageSize, rep.HighWater, tr.hwm)
			}
			if rep.Free != int64(tr.free) || tr.free == 0 {
				t.Fatalf("Free %d, bbolt %d", rep.Free, tr.free)
			}
			if uint64(rep.Pages+rep.Free) != rep.HighWater {
				t.Fatalf("Pages %d + Free %d != HighWater %d", rep.Pages, rep.Free, rep.HighWater)
			}
			want := int64(2 + tr.treePages)
			if !nfs {
				want += 1 + int64(hdrOf(data, freelistID(data)).overflow)
			}
			if rep.Pages != want {
				t.Fatalf("Pages %d, bbolt's stats give %d", rep.Pages, want)
			}
			for _, p := range testPaths {
				name := string(bytes.Join(p, []byte("/")))
				got, lrep := leafEntries(t, data, p)
				if !lrep.OK() {
					t.Fatalf("Leaf(%s): %v", name, lrep.Problems)
				}
				if !equalEntries(got, tr.entries[name]) {
					t.Fatalf("Leaf(%s): %d entries differ from bbolt's %d", name, len(got), len(tr.entries[name]))
				}
				if lrep.Sequence != tr.seqs[name] {
					t.Fatalf("Leaf(%s): sequence %d, bbolt %d", name, lrep.Sequence, tr.seqs[name])
				}
				seq, err := Sequence(bytes.NewReader(data), int64(len(data)), Limits{}, p)
				if err != nil || seq != tr.seqs[name] {
					t.Fatalf("Sequence(%s) = %d, %v; want %d", name, seq, err, tr.seqs[name])
				}
			}
			if tr.seqs["records"] != 42 || tr.seqs["meta/x"] != 3 {
				t.Fatalf("sequences %v", tr.seqs)
			}
		})
	}
}

func equalEntries(a, b []entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].k, b[i].k) || !bytes.Equal(a[i].v, b[i].v) || a[i].isBucket != b[i].isBucket {
			return false
		}
	}
	return true
}

func TestLeafErrors(t *testing.T) {
	_, data := buildDB(t, t.TempDir(), false, richSteps()[0])
	r := bytes.NewReader(data)
	if _, err := Leaf(r, int64(len(data)), Limits{}, [][]byte{[]byte("nope")}, func(k, v []byte, b bool) error { return nil }); !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("missing bucket: %v", err)
	}
	if _, err := Leaf(r, int64(len(data)), Limits{}, [][]byte{[]byte("meta"), []byte("version")}, func(k, v []byte, b bool) error { return nil }); !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("value as bucket: %v", err)
	}
	stop := errors.New("stop")
	n := 0
	_, err := Leaf(r, int64(len(data)), Limits{}, [][]byte{[]byte("records")}, func(k, v []byte, b bool) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if err != stop || n != 10 {
		t.Fatalf("stop: %v after %d", err, n)
	}
}

// --- helpers to read and damage files in tests ---

func pageBytes(data []byte, id uint64) []byte {
	return data[id*testPageSize : (id+1)*testPageSize]
}

func hdrOf(data []byte, id uint64) pageHeader { return decodePageHeader(pageBytes(data, id)) }

// curMeta returns the index (0 or 1) and the meta in use.
func curMeta(data []byte) (int, meta) {
	m0 := decodeMeta(data[pageHeaderSize:])
	m1 := decodeMeta(data[testPageSize+pageHeaderSize:])
	if m1.txid > m0.txid {
		return 1, m1
	}
	return 0, m0
}

func freelistID(data []byte) uint64 { _, m := curMeta(data); return m.freelist }

// setMetas applies fn to both metas and rewrites their checksums.
func setMetas(data []byte, fn func(b []byte)) {
	for i := 0; i < 2; i++ {
		b := data[i*testPageSize+pageHeaderSize : i*testPageSize+pageHeaderSize+metaSize]
		fn(b)
		h := fnv.New64a()
		h.Write(b[:metaSumOffset])
		le.PutUint64(b[metaSumOffset:], h.Sum64())
	}
}

// bucketRoot returns the root page of top-level bucket name; the root
// tree must be a single leaf.
func bucketRoot(t *testing.T, data []byte, name string) uint64 {
	t.Helper()
	_, m := curMeta(data)
	p := pageBytes(data, m.root)
	h := decodePageHeader(p)
	_, leaves, bad := decodeElems(p, h.flags, int(h.count))
	if bad != "" {
		t.Fatal(bad)
	}
	for _, e := range leaves {
		if string(e.key) == name {
			return le.Uint64(e.value)
		}
	}
	t.Fatalf("no bucket %q", name)
	return 0
}

func branchChild(data []byte, id uint64, i int) uint64 {
	return le.Uint64(pageBytes(data, id)[pageHeaderSize+i*branchElemSize+8:])
}

func setBranchChild(data []byte, id uint64, i int, child uint64) {
	le.PutUint64(pageBytes(data, id)[pageHeaderSize+i*branchElemSize+8:], child)
}

// deepPages returns the records tree's root R, a branch child B of R and a
// leaf L under B.
func deepPages(t *testing.T, data []byte) (r, b, l uint64) {
	t.Helper()
	r = bucketRoot(t, data, "records")
	b = branchChild(data, r, 0)
	if hdrOf(data, r).flags != flagBranch || hdrOf(data, b).flags != flagBranch {
		t.Fatal("records tree is not 3 deep")
	}
	l = branchChild(data, b, 0)
	if hdrOf(data, l).flags != flagLeaf {
		t.Fatal("no leaf under B")
	}
	return r, b, l
}

// checkWant runs Check and Leaf on data and requires a problem containing
// want (on page page, unless page is ^0).
func checkWant(t *testing.T, data []byte, page uint64, want string) *Report {
	t.Helper()
	start := time.Now()
	rep := Check(bytes.NewReader(data), int64(len(data)), Limits{})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Check took %v", d)
	}
	found := false
	for _, p := range rep.Problems {
		if strings.Contains(p.String(), want) && (page == ^uint64(0) || p.Page == page) {
			found = true
		}
	}
	if !found {
		t.Fatalf("want problem %q on page %d; got %d problems: %v", want, page, len(rep.Problems), head(rep.Problems))
	}
	// Salvage must also survive.
	_, _ = Leaf(bytes.NewReader(data), int64(len(data)), Limits{}, [][]byte{[]byte("records")}, func(k, v []byte, b bool) error { return nil })
	return rep
}

func head(ps []Problem) []Problem {
	if len(ps) > 8 {
		return ps[:8]
	}
	return ps
}

func TestDamage(t *testing.T) {
	_, clean := buildDB(t, t.TempDir(), false, richSteps()...)
	fresh := func() []byte { return bytes.Clone(clean) }

	t.Run("self cycle", func(t *testing.T) {
		d := fresh()
		r, _, _ := deepPages(t, d)
		setBranchChild(d, r, 0, r)
		checkWant(t, d, r, "multiple references")
	})
	t.Run("ancestor cycle", func(t *testing.T) {
		d := fresh()
		r, b, _ := deepPages(t, d)
		setBranchChild(d, b, 0, r)
		checkWant(t, d, r, "multiple references")
	})
	t.Run("referenced twice", func(t *testing.T) {
		d := fresh()
		_, b, l := deepPages(t, d)
		setBranchChild(d, b, 1, l)
		checkWant(t, d, l, "multiple references")
		checkWant(t, d, ^uint64(0), "unreachable unfreed")
	})
	t.Run("leaf where a branch belongs", func(t *testing.T) {
		d := fresh()
		r, _, _ := deepPages(t, d)
		b2 := branchChild(d, r, 1)
		l2 := branchChild(d, b2, 0)
		setBranchChild(d, r, 1, l2)
		checkWant(t, d, l2, "leaf at depth 2, other leaves of the tree at depth 3")
		checkWant(t, d, ^uint64(0), "unreachable unfreed")
	})
	t.Run("pgid at high-water mark", func(t *testing.T) {
		d := fresh()
		_, b, _ := deepPages(t, d)
		_, m := curMeta(d)
		setBranchChild(d, b, 1, m.pgid+5)
		checkWant(t, d, m.pgid+5, "beyond the high-water mark")
	})
	t.Run("pgid beyond file end", func(t *testing.T) {
		d := fresh()
		_, b, _ := deepPages(t, d)
		setMetas(d, func(m []byte) { le.PutUint64(m[40:], 1<<40) })
		setBranchChild(d, b, 1, 1<<39)
		checkWant(t, d, 1<<39, "beyond file end")
		checkWant(t, d, ^uint64(0), "high-water mark 1099511627776 beyond file end")
	})
	t.Run("huge overflow", func(t *testing.T) {
		for _, bigHWM := range []bool{false, true} {
			d := fresh()
			_, _, l := deepPages(t, d)
			le.PutUint32(pageBytes(d, l)[12:], 0xFFFFFFFF)
			want := "runs past the high-water mark"
			if bigHWM {
				setMetas(d, func(m []byte) { le.PutUint64(m[40:], 1<<50) })
				want = "over the limit"
			}
			checkWant(t, d, l, want)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			Check(bytes.NewReader(d), int64(len(d)), Limits{})
			runtime.ReadMemStats(&after)
			// The walk reads the whole file once; anything near the
			// overflow's 16 TiB would be far beyond this.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(d))+16<<20 {
				t.Fatalf("Check allocated %d bytes on a %d-byte file", alloc, len(d))
			}
		}
	})
	t.Run("count 0xFFFF", func(t *testing.T) {
		d := fresh()
		_, _, l := deepPages(t, d)
		le.PutUint16(pageBytes(d, l)[10:], 0xFFFF)
		checkWant(t, d, l, "elements overrun the page")
	})
	t.Run("keys out of order", func(t *testing.T) {
		d := fresh()
		_, _, l := deepPages(t, d)
		p := pageBytes(d, l)
		h := decodePageHeader(p)
		_, leaves, _ := decodeElems(p, h.flags, int(h.count))
		copy(leaves[2].key, leaves[0].key) // leaves alias d
		checkWant(t, d, l, "not above key[1]")
	})
	t.Run("key below separator", func(t *testing.T) {
		d := fresh()
		_, b, _ := deepPages(t, d)
		l1 := branchChild(d, b, 1)
		p := pageBytes(d, l1)
		h := decodePageHeader(p)
		_, leaves, _ := decodeElems(p, h.flags, int(h.count))
		copy(leaves[0].key, "k00000000")
		checkWant(t, d, l1, "below the parent's separator")
	})
	t.Run("both metas zeroed", func(t *testing.T) {
		d := fresh()
		clear(d[:2*testPageSize])
		checkWant(t, d, 0, "no valid meta page")
		if _, err := Leaf(bytes.NewReader(d), int64(len(d)), Limits{}, nil, func(k, v []byte, b bool) error { return nil }); !errors.Is(err, ErrNoMeta) {
			t.Fatalf("Leaf: %v", err)
		}
	})
	t.Run("one meta zeroed", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			d := fresh()
			cur, _ := curMeta(d)
			// Zeroing the older meta leaves the current file; zeroing the
			// current one falls back to the previous transaction, whose
			// pages bbolt may since have reused, so only check no panic.
			clear(d[i*testPageSize : (i+1)*testPageSize])
			rep := Check(bytes.NewReader(d), int64(len(d)), Limits{})
			if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], fmt.Sprintf("meta page %d", i)) {
				t.Fatalf("notes %v", rep.Notes)
			}
			if i != cur && !rep.OK() {
				t.Fatalf("older meta zeroed: %v", head(rep.Problems))
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		d := fresh()
		d = d[:len(d)/2]
		checkWant(t, d, ^uint64(0), "beyond file end")
		for _, n := range []int{0, 1, 79, 80, testPageSize, testPageSize + 81, 2*testPageSize + 3} {
			rep := Check(bytes.NewReader(d[:n]), int64(n), Limits{})
			if rep.OK() {
				t.Fatalf("truncated to %d: OK", n)
			}
		}
	})
	t.Run("zeroed freelist", func(t *testing.T) {
		d := fresh()
		fl := freelistID(d)
		clear(pageBytes(d, fl))
		checkWant(t, d, fl, "page header says page 0")
		checkWant(t, d, ^uint64(0), "unreachable unfreed")
	})
	t.Run("reachable free", func(t *testing.T) {
		d := fresh()
		_, _, l := deepPages(t, d)
		fl := pageBytes(d, freelistID(d))
		if decodePageHeader(fl).count == 0 {
			t.Fatal("empty freelist")
		}
		le.PutUint64(fl[pageHeaderSize:], l)
		checkWant(t, d, l, "multiple references (reachable and free)")
	})
	t.Run("meta type on tree page", func(t *testing.T) {
		d := fresh()
		_, _, l := deepPages(t, d)
		le.PutUint16(pageBytes(d, l)[8:], flagMeta)
		checkWant(t, d, l, "invalid type: meta")
	})
	t.Run("freelist type on tree page", func(t *testing.T) {
		d := fresh()
		_, b, _ := deepPages(t, d)
		le.PutUint16(pageBytes(d, b)[8:], flagFreelist)
		checkWant(t, d, b, "invalid type: freelist")
	})
	t.Run("depth limit", func(t *testing.T) {
		rep := Check(bytes.NewReader(clean), int64(len(clean)), Limits{MaxDepth: 2})
		if rep.OK() || !strings.Contains(rep.Problems[0].What, "deeper than 2") {
			t.Fatalf("%v", head(rep.Problems))
		}
	})
	t.Run("problem limit", func(t *testing.T) {
		d := fresh()
		fl := freelistID(d)
		clear(pageBytes(d, fl))
		_, _, l := deepPages(t, d)
		le.PutUint16(pageBytes(d, l)[8:], flagMeta)
		rep := Check(bytes.NewReader(d), int64(len(d)), Limits{MaxProblems: 1})
		if len(rep.Problems) != 1 || !rep.Truncated || rep.OK() {
			t.Fatalf("%d problems, truncated %v", len(rep.Problems), rep.Truncated)
		}
	})
}

// TestSalvageSkipsDamage damages one leaf of records and requires Leaf to
// return every other entry, in order.
func TestSalvageSkipsDamage(t *testing.T) {
	path, data := buildDB(t, t.TempDir(), false, richSteps()...)
	tr := boltTruth(t, path, false, [][][]byte{{[]byte("records")}})
	all := tr.entries["records"]
	_, _, l := deepPages(t, data)
	p := pageBytes(data, l)
	h := decodePageHeader(p)
	_, lost, _ := decodeElems(p, h.flags, int(h.count))
	lostKeys := map[string]bool{}
	for _, e := range lost {
		lostKeys[string(e.key)] = true
	}
	le.PutUint16(p[8:], 0x77)
	got, rep := leafEntries(t, data, [][]byte{[]byte("records")})
	if rep.OK() {
		t.Fatal("damage not reported")
	}
	var want []entry
	for _, e := range all {
		if !lostKeys[string(e.k)] {
			want = append(want, e)
		}
	}
	if len(lostKeys) == 0 || !equalEntries(got, want) {
		t.Fatalf("salvaged %d entries, want %d (lost %d)", len(got), len(want), len(lostKeys))
	}
}

// TestBoltDiesOnDamage is the negative control: files that Check reports
// in bounded time make bbolt's own Tx.Check, in a child process, die (a
// fault on a page id far beyond the mapping, a stack overflow on a cycle)
// or hang until killed (the cycle: bbolt recurses along it, formatting an
// ever longer page stack into each error).
func TestBoltDiesOnDamage(t *testing.T) {
	if path := os.Getenv("BOLTWALK_CHILD_CHECK"); path != "" {
		debug.SetMaxStack(64 << 20)
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(0)
		}
		_ = db.View(func(tx *bolt.Tx) error {
			for range tx.Check() {
			}
			return nil
		})
		fmt.Println("bbolt check returned")
		os.Exit(0)
	}
	_, clean := buildDB(t, t.TempDir(), false, richSteps()...)
	for _, tc := range []struct {
		name   string
		damage func(d []byte)
		hang   bool // bbolt may hang rather than die
	}{
		{"cycle", func(d []byte) {
			r, _, _ := deepPages(t, d)
			setBranchChild(d, r, 0, r)
		}, true},
		{"wild page id", func(d []byte) {
			_, b, _ := deepPages(t, d)
			setMetas(d, func(m []byte) { le.PutUint64(m[40:], 1<<40) })
			setBranchChild(d, b, 1, 1<<30) // 4 TiB into bbolt's mapping
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := bytes.Clone(clean)
			tc.damage(data)
			start := time.Now()
			rep := Check(bytes.NewReader(data), int64(len(data)), Limits{})
			took := time.Since(start)
			if rep.OK() || took > 5*time.Second {
				t.Fatalf("boltwalk: OK=%v in %v", rep.OK(), took)
			}
			path := filepath.Join(t.TempDir(), "damaged.bolt")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBoltDiesOnDamage$")
			cmd.Env = append(os.Environ(), "BOLTWALK_CHILD_CHECK="+path)
			cmd.WaitDelay = 2 * time.Second
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("bbolt's Tx.Check survived:\n%s", out)
			}
			if ctx.Err() != nil && !tc.hang {
				t.Fatalf("bbolt's Tx.Check hung instead of dying")
			}
			if ctx.Err() == nil && !bytes.Contains(out, []byte("fatal error")) && !bytes.Contains(out, []byte("panic")) {
				t.Fatalf("child failed oddly (%v):\n%.2000s", err, out)
			}
			t.Logf("bbolt child: %v (killed on timeout: %v), output %.120q; boltwalk: %d problems in %v, first %v",
				err, ctx.Err() != nil, out, len(rep.Problems), took, rep.Problems[0])
		})
	}
}

// mutations applies deterministic damage to data for quick robustness
// checks outside fuzzing.
func TestMutationsNoPanic(t *testing.T) {
	_, data := buildDB(t, t.TempDir(), false, smallSteps()...)
	seed := uint64(1)
	next := func() uint64 { seed = seed*6364136223846793005 + 1442695040888963407; return seed >> 11 }
	for i := 0; i < 3000; i++ {
		d := bytes.Clone(data)
		for j := 0; j < 1+int(next()%4); j++ {
			off := int(next() % uint64(len(d)))
			switch next() % 3 {
			case 0:
				d[off] = byte(next())
			case 1:
				d[off] ^= 0xFF
			default:
				d[off] = 0
			}
		}
		runAll(d)
	}
}

func runAll(d []byte) {
	r := bytes.NewReader(d)
	n := int64(len(d))
	Check(r, n, Limits{})
	for _, p := range [][][]byte{nil, {[]byte("records")}, {[]byte("meta"), []byte("x")}, {[]byte("meta"), []byte("inl")}} {
		_, _ = Leaf(r, n, Limits{}, p, func(k, v []byte, b bool) error { return nil })
		_, _ = Sequence(r, n, Limits{}, p)
	}
}

// smallSteps builds a small store: a few pages, a 2-level records tree,
// overflow, nested and inline buckets and a freelist.
func smallSteps() []func(tx *bolt.Tx) error {
	return []func(tx *bolt.Tx) error{
		func(tx *bolt.Tx) error {
			r, _ := tx.CreateBucket([]byte("records"))
			for i := 0; i < 120; i++ {
				_ = r.Put(fmt.Appendf(nil, "k%04d", i), val(i, 60))
			}
			_ = r.Put([]byte("large"), val(1, 5000))
			_ = r.SetSequence(7)
			m, _ := tx.CreateBucket([]byte("meta"))
			x, _ := m.CreateBucket([]byte("x"))
			for i := 0; i < 80; i++ {
				_ = x.Put(fmt.Appendf(nil, "x%03d", i), val(i, 40))
			}
			inl, _ := m.CreateBucket([]byte("inl"))
			return inl.Put([]byte("a"), []byte("1"))
		},
		func(tx *bolt.Tx) error {
			r := tx.Bucket([]byte("records"))
			for i := 0; i < 120; i += 4 {
				_ = r.Delete(fmt.Appendf(nil, "k%04d", i))
			}
			return nil
		},
	}
}

// FuzzCheck damages real bbolt files (built by bbolt in the test) and
// requires Check, Leaf and Sequence not to panic and to return promptly.
// An input is (base, edits): base picks a seed file; edits is a list of
// 5-byte records (offset u32 little-endian, modulo the file size; a byte
// to store there), and a trailing partial record truncates the file at
// its value. A base beyond the seed files makes edits the whole file.
// Keeping inputs small keeps the fuzzer's mutation and minimization fast.
func FuzzCheck(f *testing.F) {
	dir := f.TempDir()
	var bases [][]byte
	for _, b := range []struct {
		nfs   bool
		steps []func(tx *bolt.Tx) error
	}{{false, smallSteps()}, {true, smallSteps()}, {false, nil}} {
		_, d := buildDB(f, dir, b.nfs, b.steps...)
		_, m := curMeta(d)
		if n := m.pgid * testPageSize; n < uint64(len(d)) {
			d = d[:n] // the tail beyond the high-water mark is unused
		}
		bases = append(bases, d)
	}
	for i := range bases {
		f.Add(uint8(i), []byte(nil))
	}
	// A few meaningful edits as seeds: the count, flags and overflow of
	// page 3, and a truncation.
	f.Add(uint8(0), []byte{10 + 3*testPageSize&0xff, (3 * testPageSize) >> 8, 0, 0, 0xFF})
	f.Add(uint8(0), []byte{8, 3 * testPageSize >> 8, 0, 0, 0x04})
	f.Add(uint8(0), []byte{15, 3 * testPageSize >> 8, 0, 0, 0xFF, 0x00, 0x50})
	f.Add(uint8(len(bases)), bases[2])
	f.Fuzz(func(t *testing.T, base uint8, edits []byte) {
		var d []byte
		if int(base) < len(bases) {
			d = bytes.Clone(bases[base])
			for len(edits) >= 5 {
				off := uint64(le.Uint32(edits)) % uint64(len(d))
				d[off] = edits[4]
				edits = edits[5:]
			}
			if len(edits) > 0 {
				var b [4]byte
				copy(b[:], edits)
				d = d[:uint64(le.Uint32(b[:]))%uint64(len(d)+1)]
			}
		} else {
			d = edits
		}
		start := time.Now()
		runAll(d)
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("took %v on %d bytes", el, len(d))
		}
	})
}

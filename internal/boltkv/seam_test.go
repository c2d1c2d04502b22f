package boltkv_test

// The seam's price: the record layer's hot-path calls made on bbolt directly
// and through kv.Tx (boltkv), side by side. TestSeamAllocs asserts that the
// seam adds no allocation (one documented exception: a Cursor, which an
// interface return moves to the heap), and that its checker catches an
// adapter that does allocate (the negative control). BenchmarkSeam times the
// same calls; compare the two columns with benchstat:
//
//	for i in $(seq 10); do go test -run '^$' -bench Seam ./internal/boltkv; done > /tmp/seam.txt
//	(cd bench && go tool benchstat -col /impl /tmp/seam.txt)

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/boltkv"
	"github.com/psbase/psbase/internal/kv"
)

const seamKeys = 4096

var (
	seamRecords = []byte("records")
	seamMeta    = []byte("psbase")
	seamValue   = make([]byte, 64)
)

// seamKey builds a lookup key as the record layer's lookupKey does: in a
// buffer that outlives the call, so it costs no allocation on either path.
// (A key in the caller's stack array stays there when bbolt is called
// directly but escapes through the seam's interface call: that is why the
// record layer has lookupKey.) putKey is a Put's key, a fresh slice as
// idKey makes: bbolt keeps it until commit, so it is on the heap either way.
func seamKey(i int) []byte {
	binary.BigEndian.PutUint64(seamBuf[:], uint64(1+i%seamKeys))
	return seamBuf[:]
}

var seamBuf [8]byte

func putKey(i int) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(1+i%seamKeys))
	return k
}

// seamDB is a bbolt file with a records bucket of seamKeys keys and a meta
// bucket, laid out as psbase's.
func seamDB(tb testing.TB) *bolt.DB {
	tb.Helper()
	db, err := bolt.Open(filepath.Join(tb.TempDir(), "seam.db"), 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(seamRecords)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(seamMeta); err != nil {
			return err
		}
		for i := range seamKeys {
			k := make([]byte, 8)
			binary.BigEndian.PutUint64(k, uint64(1+i))
			if err := b.Put(k, seamValue); err != nil {
				return err
			}
		}
		return b.SetSequence(seamKeys)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// seamOp is one hot-path step done twice: on bbolt directly and through a
// kv.Tx over the same bbolt transaction. i varies the key.
type seamOp struct {
	name     string
	writable bool
	bolt     func(tx *bolt.Tx, i int)
	kv       func(tx kv.Tx, i int)
}

var sink []byte

var seamOps = []seamOp{
	{
		name: "get", // Store.Get: the records bucket, one key
		bolt: func(tx *bolt.Tx, i int) {
			sink = tx.Bucket(seamRecords).Get(seamKey(i))
		},
		kv: func(tx kv.Tx, i int) {
			sink = tx.Bucket(seamRecords).Get(seamKey(i))
		},
	},
	{
		name: "scan16", // a select's walk: seek, then 15 steps
		bolt: func(tx *bolt.Tx, i int) {
			c := tx.Bucket(seamRecords).Cursor()
			n := 0
			for key, _ := c.Seek(seamKey(i % (seamKeys - 16))); key != nil && n < 16; key, _ = c.Next() {
				n++
			}
		},
		kv: func(tx kv.Tx, i int) {
			c := tx.Bucket(seamRecords).Cursor()
			n := 0
			for key, _ := c.Seek(seamKey(i % (seamKeys - 16))); key != nil && n < 16; key, _ = c.Next() {
				n++
			}
		},
	},
	{
		name:     "insert", // Store.Insert's calls: sequence, free-key check, put, meta put
		writable: true,
		bolt: func(tx *bolt.Tx, i int) {
			b := tx.Bucket(seamRecords)
			_ = b.Sequence()
			sink = b.Get(seamKey(i))
			_ = b.Put(putKey(i), seamValue)
			_ = tx.Bucket(seamMeta).Put(seamMeta, seamValue)
		},
		kv: func(tx kv.Tx, i int) {
			b := tx.Bucket(seamRecords)
			_ = b.Sequence()
			sink = b.Get(seamKey(i))
			_ = b.Put(putKey(i), seamValue)
			_ = tx.Bucket(seamMeta).Put(seamMeta, seamValue)
		},
	},
}

// inTx runs fn in one bbolt transaction of the wanted kind, rolled back.
func inTx(tb testing.TB, db *bolt.DB, writable bool, fn func(*bolt.Tx)) {
	tb.Helper()
	tx, err := db.Begin(writable)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	fn(tx)
}

// extraAllocs is how many allocations per call the kv path makes above the
// direct one (both measured in one transaction, after a warm-up call that
// lets bbolt materialise the nodes a writable transaction touches).
func extraAllocs(tb testing.TB, db *bolt.DB, op seamOp, wrap func(*bolt.Tx) kv.Tx) float64 {
	tb.Helper()
	var direct, seam float64
	inTx(tb, db, op.writable, func(tx *bolt.Tx) {
		i := 0
		op.bolt(tx, i)
		direct = testing.AllocsPerRun(200, func() { i++; op.bolt(tx, i) })
	})
	inTx(tb, db, op.writable, func(tx *bolt.Tx) {
		k := wrap(tx)
		i := 0
		op.kv(k, i)
		seam = testing.AllocsPerRun(200, func() { i++; op.kv(k, i) })
	})
	return seam - direct
}

func TestSeamAllocs(t *testing.T) {
	db := seamDB(t)
	wrap := func(tx *bolt.Tx) kv.Tx { return boltkv.Tx{BTx: tx} }
	for _, op := range seamOps {
		extra := extraAllocs(t, db, op, wrap)
		// A kv.Cursor is an interface value, so the bbolt cursor behind it
		// lives on the heap; called directly, bbolt's Cursor is inlined and
		// stays on the caller's stack. That one allocation per walk is the
		// seam's whole cost (kv.go, "What the seam costs").
		want := 0.0
		if op.name == "scan16" {
			want = 1
		}
		if extra != want {
			t.Errorf("%s: the seam adds %.1f allocations per call, want %.0f", op.name, extra, want)
		}
	}
}

// leakyTx is a deliberately broken adapter: its Get copies the value.
type leakyTx struct{ boltkv.Tx }
type leakyBucket struct{ innerBucket }

// innerBucket renames kv.Bucket so that embedding it does not make a field
// called Bucket, which would collide with the method of that name.
type innerBucket = interface{ kv.Bucket }

func (t leakyTx) Bucket(name []byte) kv.Bucket { return leakyBucket{t.Tx.Bucket(name)} }
func (b leakyBucket) Get(key []byte) []byte {
	return append([]byte(nil), b.innerBucket.Get(key)...)
}

// TestSeamAllocsNegativeControl: the checker sees an adapter that allocates,
// and a caller whose key escapes through the seam.
func TestSeamAllocsNegativeControl(t *testing.T) {
	db := seamDB(t)
	extra := extraAllocs(t, db, seamOps[0], func(tx *bolt.Tx) kv.Tx { return leakyTx{boltkv.Tx{BTx: tx}} })
	if extra < 1 {
		t.Fatalf("an adapter that copies every value measured %.1f extra allocations; the checker is blind", extra)
	}

	// A caller's stack key escapes through the interface call (why the
	// record layer looks keys up with lookupKey): the checker must see it.
	stack := seamOp{
		name: "stack-key get",
		bolt: func(tx *bolt.Tx, i int) {
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], uint64(1+i%seamKeys))
			sink = tx.Bucket(seamRecords).Get(k[:])
		},
		kv: func(tx kv.Tx, i int) {
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], uint64(1+i%seamKeys))
			sink = tx.Bucket(seamRecords).Get(k[:])
		},
	}
	if extra := extraAllocs(t, db, stack, func(tx *bolt.Tx) kv.Tx { return boltkv.Tx{BTx: tx} }); extra != 1 {
		t.Fatalf("a stack key through the seam measured %.1f extra allocations, want 1 (it escapes)", extra)
	}
}

func BenchmarkSeam(b *testing.B) {
	for _, op := range seamOps {
		b.Run("op="+op.name, func(b *testing.B) {
			db := seamDB(b)
			b.Run("impl=bolt", func(b *testing.B) {
				inTx(b, db, op.writable, func(tx *bolt.Tx) {
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						i++
						op.bolt(tx, i)
					}
				})
			})
			b.Run("impl=kv", func(b *testing.B) {
				inTx(b, db, op.writable, func(tx *bolt.Tx) {
					k := kv.Tx(boltkv.Tx{BTx: tx})
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						i++
						op.kv(k, i)
					}
				})
			})
		})
	}
}

//go:build unix

package psbase_test

// Benchmarks that put psbase next to its floor in the same run: the same
// durable insert and the same get done with raw bbolt, opening and closing
// the bbolt file per operation under a flock of a separate lock file (the
// least any process-safe, open-per-operation store must do). The *Ratio
// benchmarks alternate psbase and floor operations and report the ratio
// (x-floor) directly, so machine noise hits both sides alike:
//
//	go test -run '^$' -bench 'Floor' -count 5 .
//
// Targets: psbase adds at most 15% to a durable insert and at most 30% to a
// get over the floor.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/psbase/psbase"
	bolt "go.etcd.io/bbolt"
)

// floorRecords is how many records the get benchmarks' stores hold.
const floorRecords = 10_000

var floorFields = []psbase.Field{{Name: "n", Type: psbase.Int}, {Name: "payload", Type: psbase.String}}

func floorPayload(i int) string { return fmt.Sprintf("payload of record %08d, psbench", i) }

// floorStore is raw bbolt with psbase's minimum around every operation: a
// flock on a separate lock file (its descriptor opened once: the cheapest
// possible lock), bolt.Open (read-only for reads), one transaction, Close,
// unlock.
type floorStore struct {
	path string
	lock *os.File
}

var floorBucket = []byte("t")

func newFloorStore(b *testing.B, dir string, records int) *floorStore {
	b.Helper()
	path := filepath.Join(dir, "floor.db")
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lock.Close() })
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(floorBucket)
		if err != nil {
			return err
		}
		for i := 1; i <= records; i++ {
			id, _ := bk.NextSequence()
			if err := bk.Put(floorKey(id), floorValue(int64(i), floorPayload(i))); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	return &floorStore{path: path, lock: lock}
}

func floorKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

func floorValue(n int64, payload string) []byte {
	v := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint64(v, uint64(n))
	copy(v[8:], payload)
	return v
}

func (f *floorStore) do(write bool, fn func(*bolt.Tx) error) error {
	how := syscall.LOCK_SH
	if write {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.lock.Fd()), how); err != nil {
		return err
	}
	defer syscall.Flock(int(f.lock.Fd()), syscall.LOCK_UN)
	db, err := bolt.Open(f.path, 0o644, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: !write})
	if err != nil {
		return err
	}
	if write {
		err = db.Update(fn)
	} else {
		err = db.View(fn)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f *floorStore) insert(n int64, payload string) error {
	return f.do(true, func(tx *bolt.Tx) error {
		bk := tx.Bucket(floorBucket)
		id, err := bk.NextSequence()
		if err != nil {
			return err
		}
		return bk.Put(floorKey(id), floorValue(n, payload))
	})
}

func (f *floorStore) get(id uint64) (n int64, payload string, err error) {
	err = f.do(false, func(tx *bolt.Tx) error {
		v := tx.Bucket(floorBucket).Get(floorKey(id))
		if v == nil {
			return fmt.Errorf("record %d not found", id)
		}
		// Decode into values, as psbase's Get does.
		n, payload = int64(binary.BigEndian.Uint64(v)), string(v[8:])
		return nil
	})
	return n, payload, err
}

func newPsbaseStore(b *testing.B, dir string, records int, opts ...psbase.Option) *psbase.Store {
	b.Helper()
	ctx := context.Background()
	s, err := psbase.Create(ctx, filepath.Join(dir, "psbase.db"), floorFields, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	err = s.Txn(ctx, func(tx *psbase.Tx) error {
		for i := 1; i <= records; i++ {
			if _, err := tx.Insert(psbase.Values{"n": int64(i), "payload": floorPayload(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkFloorInsert is a durable single-record insert: psbase's Insert
// (through group commit's queue, and per operation with WithoutGroupCommit)
// and the floor's, as separate sub-benchmarks (for benchstat).
func BenchmarkFloorInsert(b *testing.B) {
	ctx := context.Background()
	for _, v := range []struct {
		name string
		opts []psbase.Option
	}{{"psbase", nil}, {"psbase-per-op", []psbase.Option{psbase.WithoutGroupCommit()}}} {
		b.Run(v.name, func(b *testing.B) {
			s := newPsbaseStore(b, b.TempDir(), 0, v.opts...)
			i := 0
			for b.Loop() {
				i++
				if _, err := s.Insert(ctx, psbase.Values{"n": int64(i), "payload": floorPayload(i)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("floor", func(b *testing.B) {
		f := newFloorStore(b, b.TempDir(), 0)
		i := 0
		for b.Loop() {
			i++
			if err := f.insert(int64(i), floorPayload(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFloorGet is a get by random ID on a 10 000-record store: psbase
// with its kept read handle (the default, warm.go), psbase opening the file
// for every read (WithoutWarmReads), and the floor.
func BenchmarkFloorGet(b *testing.B) {
	ctx := context.Background()
	for _, v := range []struct {
		name string
		opts []psbase.Option
	}{{"psbase", nil}, {"psbase-cold", []psbase.Option{psbase.WithoutWarmReads()}}} {
		b.Run(v.name, func(b *testing.B) {
			s := newPsbaseStore(b, b.TempDir(), floorRecords, v.opts...)
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				r, err := s.Get(ctx, 1+rng.Uint64N(floorRecords))
				if err != nil {
					b.Fatal(err)
				}
				_ = r.Values["n"].(int64)
			}
		})
	}
	b.Run("floor", func(b *testing.B) {
		f := newFloorStore(b, b.TempDir(), floorRecords)
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			if _, _, err := f.get(1 + rng.Uint64N(floorRecords)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFloorRatio alternates one psbase operation and one floor
// operation per iteration and reports each side's time per operation and
// their ratio (x-floor: 1.15 = psbase adds 15%).
func BenchmarkFloorRatio(b *testing.B) {
	ctx := context.Background()
	pair := func(b *testing.B, ps, fl func(i int) error) {
		var tp, tf time.Duration
		i := 0
		for b.Loop() {
			i++
			// Alternate which side goes first so neither always follows
			// the other's fsync or cache state.
			sides := [2]func(int) error{ps, fl}
			times := [2]*time.Duration{&tp, &tf}
			if i%2 == 1 {
				sides[0], sides[1] = sides[1], sides[0]
				times[0], times[1] = times[1], times[0]
			}
			for k := range sides {
				t := time.Now()
				if err := sides[k](i); err != nil {
					b.Fatal(err)
				}
				*times[k] += time.Since(t)
			}
		}
		n := float64(b.N)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(tp.Seconds()*1e6/n, "psbase-µs/op")
		b.ReportMetric(tf.Seconds()*1e6/n, "floor-µs/op")
		b.ReportMetric(float64(tp)/float64(tf), "x-floor")
	}
	b.Run("insert", func(b *testing.B) {
		s := newPsbaseStore(b, b.TempDir(), 0)
		f := newFloorStore(b, b.TempDir(), 0)
		pair(b, func(i int) error {
			_, err := s.Insert(ctx, psbase.Values{"n": int64(i), "payload": floorPayload(i)})
			return err
		}, func(i int) error {
			return f.insert(int64(i), floorPayload(i))
		})
	})
	for _, v := range []struct {
		name string
		opts []psbase.Option
	}{{"get", nil}, {"get-cold", []psbase.Option{psbase.WithoutWarmReads()}}} {
		b.Run(v.name, func(b *testing.B) {
			s := newPsbaseStore(b, b.TempDir(), floorRecords, v.opts...)
			f := newFloorStore(b, b.TempDir(), floorRecords)
			rng := rand.New(rand.NewPCG(1, 2))
			pair(b, func(int) error {
				r, err := s.Get(ctx, 1+rng.Uint64N(floorRecords))
				if err == nil {
					_ = r.Values["n"].(int64)
				}
				return err
			}, func(int) error {
				_, _, err := f.get(1 + rng.Uint64N(floorRecords))
				return err
			})
		})
	}
}

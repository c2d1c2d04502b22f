//go:build linux

package psbase

// Warm reads (warm.go): a Store's kept read handle must show every write of
// every other handle and process, follow the file through growth, Cleanup
// and Destroy-and-recreate, and never hold up a writer.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase/storm"
)

// warmStep is one step of TestWarmReadsFollowTheFile: a change made through
// another handle, then a read through the warm one that must see it.
type warmStep struct {
	name   string
	change func(t *testing.T, w *Store) uint64 // returns the ID to read back
	want   string                              // its name
}

func warmSteps(db string) []warmStep {
	ctx := context.Background()
	big := strings.Repeat("g", 2000)
	return []warmStep{
		{name: "insert", want: "second", change: func(t *testing.T, w *Store) uint64 {
			return mustInsert(t, w, Values{"name": "second"})
		}},
		{name: "grow", want: "grown", change: func(t *testing.T, w *Store) uint64 {
			// From a few pages to megabytes: far past the old mapping.
			err := w.Txn(ctx, func(tx *Tx) error {
				for i := range 1500 {
					if _, err := tx.Insert(Values{"name": fmt.Sprintf("%s-%d", big, i)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return mustInsert(t, w, Values{"name": "grown"})
		}},
		{name: "cleanup", want: "after-cleanup", change: func(t *testing.T, w *Store) uint64 {
			if _, err := w.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
			return mustInsert(t, w, Values{"name": "after-cleanup"})
		}},
		{name: "recreate", want: "new-store", change: func(t *testing.T, w *Store) uint64 {
			if err := w.Destroy(ctx); err != nil {
				t.Fatal(err)
			}
			n, err := Create(ctx, db, testFields)
			if err != nil {
				t.Fatal(err)
			}
			return mustInsert(t, n, Values{"name": "new-store"})
		}},
	}
}

// TestWarmReadsFollowTheFile: each change made through another handle is
// seen by the next read of the warm handle, which reopens exactly when the
// file changed under it (grown or replaced) and otherwise reuses it. The
// negative controls turn off the size check (reads past the mapping fail)
// and the identity check (reads of a replaced file are stale): each must be
// caught at the step it guards.
func TestWarmReadsFollowTheFile(t *testing.T) {
	ctx := context.Background()
	for _, variant := range []string{"checked", "negative_nosize", "negative_noidentity"} {
		t.Run(variant, func(t *testing.T) {
			r, db := newTestStore(t)
			t.Cleanup(func() { r.Close() })
			switch variant {
			case "negative_nosize":
				r.cfg.weak.noWarmSize = true
			case "negative_noidentity":
				r.cfg.weak.noWarmIdentity = true
			}
			w, err := Open(ctx, db, WithoutWarmReads())
			if err != nil {
				t.Fatal(err)
			}
			first := mustInsert(t, w, Values{"name": "first"})
			for range 3 {
				if rec, err := r.Get(ctx, first); err != nil || rec.Values["name"] != "first" {
					t.Fatalf("warm get: %v %v", rec.Values, err)
				}
			}
			if st, _ := r.Stats(ctx); st.WarmOpens != 1 || st.WarmReads < 3 {
				t.Fatalf("three reads of an unchanged file: %d opens, %d reuses; want 1 open, the rest reused", st.WarmOpens, st.WarmReads)
			}
			caught := ""
			for _, step := range warmSteps(db) {
				id := step.change(t, w)
				if step.name == "recreate" {
					if w, err = Open(ctx, db, WithoutWarmReads()); err != nil {
						t.Fatal(err)
					}
				}
				rec, err := r.Get(ctx, id)
				ok := err == nil && rec.Values["name"] == step.want
				if variant == "checked" && !ok {
					t.Fatalf("after %s: warm get of record %d: %.40v, %v; want %s", step.name, id, rec.Values["name"], err, step.want)
				}
				if !ok && caught == "" {
					caught = fmt.Sprintf("%s: %.40v, %v", step.name, rec.Values["name"], err)
				}
			}
			switch variant {
			case "checked":
				st, _ := r.Stats(ctx)
				// Opened at first, after the growth (the insert before it
				// stayed within the file's size only if bbolt had free
				// pages), after Cleanup and after the recreation.
				if st.WarmOpens < 4 || st.WarmOpens > 5 {
					t.Errorf("warm handle opened %d times over 4 changes of the file", st.WarmOpens)
				}
				// The warm handle never holds a writer up.
				if _, err := w.Insert(ctx, Values{"name": "writer"}); err != nil {
					t.Errorf("write while a warm handle is kept: %v", err)
				}
			case "negative_nosize":
				if !strings.HasPrefix(caught, "grow") {
					t.Fatalf("negative control: without the size check the read past the old mapping was not caught (first miss: %q)", caught)
				}
			case "negative_noidentity":
				if !strings.HasPrefix(caught, "cleanup") {
					t.Fatalf("negative control: without the identity check the read of the replaced file was not caught (first miss: %q)", caught)
				}
			}
			if caught != "" {
				t.Logf("caught, as it must be: %s", caught)
			}
		})
	}
}

// TestWarmReadsDamagedFile: a fault on the kept handle is ErrCorrupt, the
// handle is given up, and a later read opens a fresh one.
func TestWarmReadsDamagedFile(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStore(t)
	defer s.Close()
	for i := range 400 {
		mustInsert(t, s, Values{"name": fmt.Sprintf("record-%03d-%s", i, strings.Repeat("x", 40))})
	}
	if _, err := s.Get(ctx, 1); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(db)
	raw := append([]byte(nil), good...)
	ps := int(binary.LittleEndian.Uint32(raw[24:]))
	for off := 2 * ps; off+ps <= len(raw); off += ps {
		if binary.LittleEndian.Uint16(raw[off+8:]) == 0x01 { // a branch page: its first child, wild
			binary.LittleEndian.PutUint64(raw[off+16+8:], 0xFFFF)
		}
	}
	if err := os.WriteFile(db, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("warm get on a wild page id: %v, want ErrCorrupt", err)
	}
	if err := os.WriteFile(db, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Get(ctx, 1); err != nil || !strings.HasPrefix(rec.Values["name"].(string), "record-000") {
		t.Fatalf("get after the file was repaired: %v %v", rec.Values, err)
	}
}

// TestStormWarmReads: real processes. Writers insert records of growing
// size, churn (insert and delete), increment a counter, and one of them
// runs Cleanup every few operations; readers keep one Store open for the
// whole storm and check, with warm reads, that the counter never goes back
// and every insert a writer has acknowledged (in its ack file) reads back
// whole. Each reader must have reused its handle and reopened it as the
// file changed.
func TestStormWarmReads(t *testing.T) {
	if testing.Short() {
		t.Skip("process storm")
	}
	const writers, readers, ops = 4, 4, 60
	fields := []Field{{Name: "tag", Type: String}, {Name: "n", Type: Int}, {Name: "pad", Type: String}}
	res := storm.Run(t, storm.Config{
		Procs:   writers + readers,
		Timeout: 2 * time.Minute,
		Setup: func(dir string, loop int) error {
			s, err := Create(context.Background(), filepath.Join(dir, "warm.db"), fields)
			if err == nil {
				_, err = s.Insert(context.Background(), Values{"tag": "counter", "n": 0})
			}
			return err
		},
	}, func(w *storm.Worker) error {
		ctx := context.Background()
		s, err := Open(ctx, filepath.Join(w.Dir, "warm.db"), WithLockTimeout(time.Minute))
		if err != nil {
			return err
		}
		defer s.Close()
		if w.Task < writers {
			return warmWriterTask(ctx, s, w, ops)
		}
		return warmReaderTask(ctx, s, w, writers)
	})
	for _, l := range res.Loops {
		for _, tr := range l.Tasks {
			if tr.Result != nil {
				t.Logf("task %d: %s", tr.Task, tr.Result)
			}
		}
	}
}

func warmWriterTask(ctx context.Context, s *Store, w *storm.Worker, ops int) error {
	acks, err := os.OpenFile(filepath.Join(w.Dir, fmt.Sprintf("acks-%d", w.Task)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer acks.Close()
	for i := range ops {
		tag := fmt.Sprintf("w%d-%d", w.Task, i)
		id, err := s.Insert(ctx, Values{"tag": tag, "n": i, "pad": strings.Repeat("p", 50*i)})
		if err != nil {
			return err
		}
		fmt.Fprintf(acks, "%d %s\n", id, tag)
		switch {
		case i%5 == 0:
			err = s.Txn(ctx, func(tx *Tx) error {
				rec, err := tx.Get(1)
				if err == nil {
					_, err = tx.UpdateByID(1, Values{"n": rec.Values["n"].(int64) + 1})
				}
				return err
			})
		case i%7 == 0:
			var tmp uint64
			if tmp, err = s.Insert(ctx, Values{"tag": "tmp", "pad": strings.Repeat("t", 3000)}); err == nil {
				_, err = s.Delete(ctx, tmp)
			}
		case w.Task == 0 && i%12 == 11:
			_, err = s.Cleanup(ctx)
		}
		if err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(w.Dir, fmt.Sprintf("done-%d", w.Task)), nil, 0o644)
}

func warmReaderTask(ctx context.Context, s *Store, w *storm.Worker, writers int) error {
	var last int64
	seen := map[uint64]bool{}
	checked := 0
	for iter := 0; ; iter++ {
		rec, err := s.Get(ctx, 1)
		if err != nil {
			return fmt.Errorf("counter: %w", err)
		}
		n := rec.Values["n"].(int64)
		if n < last {
			return fmt.Errorf("counter went back from %d to %d: a stale read", last, n)
		}
		last = n
		done := 0
		for k := range writers {
			if _, err := os.Stat(filepath.Join(w.Dir, fmt.Sprintf("done-%d", k))); err == nil {
				done++
			}
			f, err := os.Open(filepath.Join(w.Dir, fmt.Sprintf("acks-%d", k)))
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				idText, tag, ok := strings.Cut(sc.Text(), " ")
				id, perr := strconv.ParseUint(idText, 10, 64)
				if !ok || perr != nil || seen[id] {
					continue
				}
				rec, err := s.Get(ctx, id)
				if err != nil || rec.Values["tag"] != tag {
					f.Close()
					return fmt.Errorf("acknowledged record %d (%s): %v, %v: a lost or stale read", id, tag, rec.Values["tag"], err)
				}
				seen[id] = true
				checked++
			}
			f.Close()
		}
		if done == writers && iter > 10 {
			break
		}
	}
	if n, err := s.Count(ctx); err != nil || n < len(seen)+1 {
		return fmt.Errorf("count %d, %v; %d records seen", n, err, len(seen))
	}
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	if st.WarmReads == 0 || st.WarmOpens < 2 {
		return fmt.Errorf("warm handle reused %d times, opened %d times: the storm did not test warm reads", st.WarmReads, st.WarmOpens)
	}
	return w.SetResult(fmt.Sprintf("reader: %d acknowledged records read back, counter %d, warm handle opened %d times, reused %d times",
		checked, last, st.WarmOpens, st.WarmReads))
}

//go:build linux

package psbase

// The commit guard (commitguard.go) on a freelist that lists pages outside
// the file: every write is refused with ErrCorrupt and the file keeps every
// byte. Negative control: with the guard's verdict ignored, the same
// write fails as a full disk would (EFBIG read as ErrNoSpace), or writes
// past the high-water mark before it fails, and the test asserts it.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// activeFreelist returns the page id of the freelist the newer meta page
// of raw names, and how many ids it lists.
func activeFreelist(t *testing.T, raw []byte) (id uint32, count int) {
	t.Helper()
	var best uint64
	for i := 0; i < 2; i++ {
		m := raw[i*4096+16:]
		if txid := binary.LittleEndian.Uint64(m[48:]); txid >= best {
			best, id = txid, uint32(binary.LittleEndian.Uint64(m[32:]))
		}
	}
	count = int(binary.LittleEndian.Uint16(raw[int(id)*4096+10:]))
	if count == 0 || count == 0xFFFF {
		t.Fatalf("the base store's freelist page %d lists %d ids: the test needs a short non-empty list", id, count)
	}
	return id, count
}

func TestCommitGuardFreelist(t *testing.T) {
	raw, err := fuzzBaseStore()
	if err != nil {
		t.Fatal(err)
	}
	fl, count := activeFreelist(t, raw)
	last := fl*4096 + 16 + uint32(count-1)*8
	cases := []struct {
		name string
		in   []byte
		// control: what the write does without the guard.
		control func(t *testing.T, err error, before, after []byte)
	}{
		{
			// 2^44 pages on: the freelist's new page is written at 2^56
			// bytes, past every file system's limit.
			name: "id far past the end",
			in:   edit(7, last+5, 0, 0x10),
			control: func(t *testing.T, err error, _, _ []byte) {
				if !errors.Is(err, ErrNoSpace) {
					t.Fatalf("without the guard the write should fail as a full disk (EFBIG), got %v", err)
				}
			},
		},
		{
			// Just past the high-water mark: bbolt writes the freelist's new
			// page into a hole past the end, then finds the meta it would
			// write invalid, so the failed write has grown the file.
			name: "id past the high-water mark",
			in:   edit(7, last, 0, 0xF0),
			control: func(t *testing.T, err error, before, after []byte) {
				if bytes.Equal(after, before) {
					t.Fatalf("without the guard the write should change the file past the high-water mark (%d bytes before and after; %v)", len(before), err)
				}
			},
		},
	}
	ctx := context.Background()
	for _, c := range cases {
		for _, weak := range []bool{false, true} {
			name := c.name
			if weak {
				name += "/control"
			}
			t.Run(name, func(t *testing.T) {
				db := filepath.Join(t.TempDir(), "s.db")
				damaged := applyEdits(raw, c.in)
				if err := os.WriteFile(db, damaged, 0o644); err != nil {
					t.Fatal(err)
				}
				s, err := Open(ctx, db)
				if err != nil {
					t.Fatal(err)
				}
				s.cfg.weak.noFreelistFits = weak
				ops := []struct {
					name string
					do   func() error
				}{
					{"insert", func() error { _, err := s.Insert(ctx, Values{"name": "new", "n": int64(1)}); return err }},
					{"delete", func() error { _, err := s.Delete(ctx, 7); return err }},
					{"update", func() error { _, err := s.UpdateByID(ctx, 4, Values{"n": int64(-4)}); return err }},
				}
				if weak {
					ops = ops[:1] // the first write is the one to judge
				}
				var werr error
				for _, op := range ops {
					werr = op.do()
					if !weak && !errors.Is(werr, ErrCorrupt) {
						t.Fatalf("%s on the damaged freelist: %v, want ErrCorrupt", op.name, werr)
					}
				}
				after, err := os.ReadFile(db)
				if err != nil {
					t.Fatal(err)
				}
				if weak {
					c.control(t, werr, damaged, after)
					return
				}
				if !bytes.Equal(after, damaged) {
					t.Fatal("a refused write changed the file")
				}
			})
		}
	}
}

// TestCommitGuardFreedPages damages, one at a time, the overflow count of
// every page of a store's trees (a store fresh from Cleanup, whose
// freelist has nothing past the damage to stop bbolt's freeing loop) and
// writes to it in a child process: each write must succeed (the page was
// not one it frees) or fail with ErrCorrupt, leaving the file as it was.
// Negative control: with the guard off, bbolt's freeing loop runs away
// (the child sees its heap pass 256 MiB and says so) on a page of them.
func TestCommitGuardFreedPages(t *testing.T) {
	ctx := context.Background()
	base := filepath.Join(t.TempDir(), "base.db")
	s, err := Create(ctx, base, fuzzFields)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 300; i++ {
		if _, err := s.Insert(ctx, Values{"name": fmt.Sprintf("r%d-v1", i), "n": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	fl, _ := activeFreelist(t, raw)
	var pages []int
	for id := 2; (id+1)*4096 <= len(raw); id++ {
		if f := binary.LittleEndian.Uint16(raw[id*4096+8:]); (f == 0x01 || f == 0x02) && id != int(fl) {
			pages = append(pages, id)
		}
	}
	run := func(t *testing.T, damaged []byte, weak bool) string {
		db := filepath.Join(t.TempDir(), "s.db")
		if err := os.WriteFile(db, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, os.Args[0], "-test.run=^TestStoreHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), storeHelperEnv+"=freed-page", "PSBASE_STORE_DB="+db, fmt.Sprintf("PSBASE_FREED_WEAK=%v", weak))
		out, err := cmd.CombinedOutput()
		if cctx.Err() != nil || (err != nil && !strings.Contains(string(out), "runaway")) {
			t.Fatalf("the child failed (%v):\n%.2000s", err, out)
		}
		if !weak {
			after, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			// Every write refused: not a byte may differ.
			if !strings.Contains(string(out), " ok") && !bytes.Equal(after, damaged) {
				t.Fatalf("a refused write changed the file:\n%s", out)
			}
		}
		return string(out)
	}
	runaways := 0
	for _, id := range pages {
		damaged := append([]byte(nil), raw...)
		binary.LittleEndian.PutUint32(damaged[id*4096+12:], 0xFFFFFFF0)
		out := run(t, damaged, false)
		if strings.Contains(out, "bad:") || strings.Contains(out, "runaway") {
			t.Fatalf("page %d damaged:\n%s", id, out)
		}
		if runaways == 0 && strings.Contains(run(t, damaged, true), "runaway") {
			runaways++ // one is the proof; each costs 256 MiB of a child
			t.Logf("without the guard, bbolt's freeing loop ran away on page %d", id)
		}
	}
	if runaways == 0 {
		t.Fatal("negative control: without the guard no damaged page made bbolt's freeing loop run away; the test cannot tell the guard works")
	}
}

// helperFreedPage writes to the damaged store at db (Insert, UpdateByID,
// Delete), printing each outcome ("bad:" for an error other than
// ErrCorrupt), and exits 3 saying "runaway" as soon as its heap passes
// 256 MiB.
func helperFreedPage(db string) {
	go func() {
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > 256<<20 {
				fmt.Println("runaway: the heap passed 256 MiB during a write")
				os.Exit(3)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	ctx := context.Background()
	s, err := Open(ctx, db)
	if err != nil {
		fmt.Println("bad: open:", err)
		os.Exit(0)
	}
	s.cfg.weak.noFreelistFits = os.Getenv("PSBASE_FREED_WEAK") == "true"
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"insert", func() error { _, err := s.Insert(ctx, Values{"name": "new", "n": int64(1)}); return err }},
		{"update", func() error { _, err := s.UpdateByID(ctx, 4, Values{"n": int64(-4)}); return err }},
		{"delete", func() error { _, err := s.Delete(ctx, 150, 151, 152); return err }},
	} {
		err := op.do()
		switch {
		case err == nil:
			fmt.Println(op.name, "ok")
		case errors.Is(err, ErrCorrupt):
			fmt.Println(op.name, "corrupt:", err)
		default:
			fmt.Println("bad:", op.name, err)
		}
	}
	os.Exit(0)
}

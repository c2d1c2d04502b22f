//go:build linux

package psbase

// FuzzDamagedStore: whole-file fuzzing of damaged stores. Each input is a
// list of edits (bit flips, zeroed and copied pages, truncation, crafted
// page headers and branch pointers, bytes) applied to a real store; a child
// process then runs every read and write operation and Check on the damaged
// copy. The only allowed outcomes: success with correct data — a version
// once written under that ID — or an error wrapping one of the sentinels a
// damaged file may give; or, only for the cases README lists as
// unrecoverable in-process (bbolt recursing on a B+tree cycle), the child's
// death, after which the file is as it was, no lock is held, and Check in
// this process reports the damage. Never an escaped panic, a hang, or wrong
// data with a nil error.
//
//	go test -run='^$' -fuzz=FuzzDamagedStore -fuzztime=60s .

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

const fuzzRecords = 150

var fuzzBase struct {
	once sync.Once
	raw  []byte
	err  error
}

// fuzzFields is the schema of the fuzzed store: name is "r<ID>-v<version>",
// so any record read back can be told correct (a version once written
// under that ID) or not.
var fuzzFields = []Field{
	{Name: "name", Type: String, Unique: true},
	{Name: "n", Type: Int},
	{Name: "blob", Type: Bytes},
}

// fuzzBaseStore builds the store every input damages: records in several
// versions, some deleted (so the freelist is not empty), an index.
func fuzzBaseStore() ([]byte, error) {
	fuzzBase.once.Do(func() {
		ctx := context.Background()
		dir, err := os.MkdirTemp("", "psbase-fuzz-base-")
		if err != nil {
			fuzzBase.err = err
			return
		}
		defer os.RemoveAll(dir)
		db := filepath.Join(dir, "base.db")
		s, err := Create(ctx, db, fuzzFields)
		if err != nil {
			fuzzBase.err = err
			return
		}
		err = s.Txn(ctx, func(tx *Tx) error {
			for i := uint64(1); i <= fuzzRecords; i++ {
				if _, err := tx.Insert(Values{"name": fmt.Sprintf("r%d-v1", i), "n": int64(i), "blob": []byte(strings.Repeat("b", int(i%40)))}); err != nil {
					return err
				}
			}
			return nil
		})
		for i := uint64(3); err == nil && i <= fuzzRecords; i += 3 {
			top := uint64(2)
			if i%9 == 0 {
				top = 3
			}
			if i%27 == 0 {
				top = 4
			}
			for v := uint64(2); v <= top && err == nil; v++ {
				err = s.Txn(ctx, func(tx *Tx) error {
					_, err := tx.UpdateByID(i, Values{"name": fmt.Sprintf("r%d-v%d", i, v)})
					return err
				})
			}
		}
		if err == nil {
			_, err = s.Delete(ctx, 10, 11, 12, 13, 14)
		}
		if err != nil {
			fuzzBase.err = err
			return
		}
		fuzzBase.raw, fuzzBase.err = os.ReadFile(db)
	})
	return fuzzBase.raw, fuzzBase.err
}

// applyEdits damages raw by the edit list in: 8 bytes per edit, at most 16.
func applyEdits(raw, in []byte) []byte {
	b := append([]byte(nil), raw...)
	ps := 4096
	if len(b) >= 28 {
		if p := int(binary.LittleEndian.Uint32(b[24:])); p >= 512 && p <= 65536 && p&(p-1) == 0 {
			ps = p
		}
	}
	for n := 0; len(in) >= 8 && n < 16; in, n = in[8:], n+1 {
		if len(b) == 0 {
			break
		}
		kind, x, y, z := in[0]%8, binary.LittleEndian.Uint32(in[1:5]), binary.LittleEndian.Uint16(in[5:7]), in[7]
		pages := uint32(max(len(b)/ps, 1))
		switch kind {
		case 0: // flip a bit
			b[int(x)%len(b)] ^= 1 << (z % 8)
		case 1: // zero a page
			off := int(x%pages) * ps
			clear(b[off:min(off+ps, len(b))])
		case 2: // copy a page over another (a stale or misplaced page)
			from, to := int(x%pages)*ps, int(uint32(y)%pages)*ps
			if from+ps <= len(b) && to+ps <= len(b) {
				copy(b[to:to+ps], b[from:from+ps])
			}
		case 3: // truncate
			b = b[:int(x)%len(b)]
		case 4: // craft a page header field (id, flags, count, overflow)
			off := int(x%pages)*ps + int(z%8)*2
			if off+2 <= len(b) {
				binary.LittleEndian.PutUint16(b[off:], y)
			}
		case 5: // overflow count of a page, up to 0xFFFFFFFF
			off := int(uint32(y)%pages)*ps + 12
			if off+4 <= len(b) {
				binary.LittleEndian.PutUint32(b[off:], x)
			}
		case 6: // point a branch element at another page (cycles, wild ids)
			off := int(x%pages) * ps
			if off+16 <= len(b) && binary.LittleEndian.Uint16(b[off+8:]) == 0x01 {
				count := int(binary.LittleEndian.Uint16(b[off+10:]))
				e := off + 16 + int(z)%max(count, 1)*16 + 8
				if e+8 <= len(b) {
					binary.LittleEndian.PutUint64(b[e:], uint64(y))
				}
			}
		case 7: // set a byte
			b[int(x)%len(b)] = z
		}
	}
	return b
}

// edit builds one 8-byte edit.
func edit(kind byte, x uint32, y uint16, z byte) []byte {
	e := []byte{kind}
	e = binary.LittleEndian.AppendUint32(e, x)
	e = binary.LittleEndian.AppendUint16(e, y)
	return append(e, z)
}

// fuzzSeeds are the damage the hostile tester found, as edit lists.
func fuzzSeeds(raw []byte) [][]byte {
	var pagesOfType = func(flags uint16) []uint32 {
		var ids []uint32
		for off := 2 * 4096; off+4096 <= len(raw); off += 4096 {
			if binary.LittleEndian.Uint16(raw[off+8:]) == flags {
				ids = append(ids, uint32(off/4096))
			}
		}
		return ids
	}
	seeds := [][]byte{
		nil,                // undamaged
		edit(0, 100, 0, 3), // a bit of meta page 0
		edit(1, 0, 0, 0),   // meta 0 zeroed
		append(edit(1, 0, 0, 0), edit(1, 1, 0, 0)...), // both metas zeroed
		edit(3, uint32(len(raw)/2), 0, 0),             // truncated in half
		edit(3, 4096*2+17, 0, 0),                      // truncated inside a page
	}
	for _, id := range pagesOfType(0x10) { // freelist
		seeds = append(seeds, edit(1, id, 0, 0), edit(5, 0xFFFFFFFF, uint16(id), 0))
		if n := uint32(binary.LittleEndian.Uint16(raw[id*4096+10:])); n > 0 && n < 0xFFFF {
			last := id*4096 + 16 + (n-1)*8
			seeds = append(seeds,
				edit(7, last+5, 0, 0x10), // its last free page 2^44 pages on: EFBIG, not a full disk
				edit(7, last, 0, 0xF0))   // its last free page past the high-water mark
		}
	}
	for _, id := range pagesOfType(0x01) { // branches: a cycle, a wild id
		seeds = append(seeds, edit(6, id, uint16(id), 0), edit(6, id, 0xFFFF, 0))
	}
	for i, id := range pagesOfType(0x02) { // leaves: flips, a huge count, a huge overflow
		if i > 3 {
			break
		}
		seeds = append(seeds,
			edit(0, id*4096+200, 0, 5),
			edit(4, id, 0xFFFF, 5),
			edit(5, 0xFFFFFFFF, uint16(id), 0),
			edit(2, id, uint16(id+1), 0))
	}
	return seeds
}

func FuzzDamagedStore(f *testing.F) {
	raw, err := fuzzBaseStore()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range fuzzSeeds(raw) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		damaged := applyEdits(raw, in)
		dir := t.TempDir()
		if keep := os.Getenv("PSBASE_FUZZ_KEEP"); keep != "" {
			dir = keep
		}
		db := filepath.Join(dir, "fuzz.db")
		if err := os.WriteFile(db, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStoreHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), storeHelperEnv+"=fuzz-ops", "PSBASE_STORE_DB="+db)
		out, err := cmd.CombinedOutput()
		text := string(out)
		switch {
		case ctx.Err() != nil:
			t.Fatalf("the operations hung past a minute on the damaged file\n%.2000s", text)
		case strings.Contains(text, "fuzz-bad"):
			t.Fatalf("wrong outcome:\n%.3000s", text)
		case err == nil && strings.Contains(text, "fuzz-ok"):
			return
		case unrecoverable(text):
			// Allowed: the process died where Go cannot recover (README).
			// Nothing may be left locked, and Check here must see damage.
			lf := flock.New(db+suffixLock, flock.SetFlag(os.O_RDWR))
			if ok, err := lf.TryLock(); err == nil && !ok {
				t.Fatal("the lock is still held after the child died")
			}
			lf.Unlock()
			s, err := Open(context.Background(), db)
			if err == nil {
				if _, err = s.Check(context.Background()); err == nil {
					t.Fatalf("the child died, yet Check finds the file sound:\n%.2000s", text)
				}
			}
			return
		default:
			t.Fatalf("the operations on the damaged file failed (%v):\n%.3000s", err, text)
		}
	})
}

// unrecoverable reports a death README lists: bbolt recursing on a cycle.
func unrecoverable(out string) bool {
	return strings.Contains(out, "goroutine stack exceeds") || strings.Contains(out, "stack overflow")
}

// fuzzAllowed are the sentinels an operation on a damaged file may return.
var fuzzAllowed = []error{ErrCorrupt, ErrNotFound, ErrNewerFormat, ErrNotExist, ErrDuplicate, ErrConflict}

// helperFuzzOps runs every operation on the damaged store at db and prints
// "fuzz-bad ..." for an outcome that is not allowed, "fuzz-ok" at the end.
func helperFuzzOps(db string) {
	ctx := context.Background()
	bad := false
	verbose := os.Getenv("PSBASE_FUZZ_VERBOSE") != ""
	judge := func(op string, err error) bool {
		if verbose {
			fmt.Printf("%s: %v\n", op, err)
		}
		if err == nil {
			return true
		}
		for _, a := range fuzzAllowed {
			if errors.Is(err, a) {
				return false
			}
		}
		fmt.Printf("fuzz-bad %s: an error no damage should give: %v\n", op, err)
		bad = true
		return false
	}
	verify := func(op string, r Record) {
		name, _ := r.Values["name"].(string)
		if name != fmt.Sprintf("r%d-v%d", r.ID, r.Version) || r.Version > 4 {
			fmt.Printf("fuzz-bad %s: record %d version %d reads %q: never written under that ID\n", op, r.ID, r.Version, name)
			bad = true
		}
	}
	s, err := Open(ctx, db, WithLockTimeout(10*time.Second))
	if judge("open", err) {
		for id := uint64(1); id <= fuzzRecords+1; id++ {
			if r, err := s.Get(ctx, id); judge("get", err) {
				verify("get", r)
			}
		}
		if recs, err := s.Select(ctx, Query{}); judge("select", err) {
			for _, r := range recs {
				verify("select", r)
			}
		}
		if recs, err := s.Select(ctx, Query{Where: []Filter{Eq("name", "r30-v2")}}); judge("select by index", err) {
			for _, r := range recs {
				verify("select by index", r)
			}
		}
		if verbose {
			ents, _ := os.ReadDir("/proc/self/fd")
			for _, e := range ents {
				l, _ := os.Readlink("/proc/self/fd/" + e.Name())
				fmt.Println("fd", e.Name(), l)
			}
		}
		_, err = s.Count(ctx)
		judge("count", err)
		judge("foreach", s.ForEach(ctx, func(r Record) error { verify("foreach", r); return nil }))
		_, err = s.Check(ctx)
		judge("check", err)
		_, err = s.Insert(ctx, Values{"name": "new", "n": int64(1)})
		judge("insert", err)
		if r, err := s.Get(ctx, 4); err == nil {
			_, err = s.Update(ctx, r, Values{"n": int64(-4)})
			judge("update", err)
		}
		_, err = s.Delete(ctx, 7)
		judge("delete", err)
		_, err = s.Cleanup(ctx)
		judge("cleanup", err)
		_, err = s.Stats(ctx)
		judge("stats", err)
	}
	if !bad {
		fmt.Println("fuzz-ok")
	}
	os.Exit(0)
}

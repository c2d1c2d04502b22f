//go:build linux

package psbase

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sentinelsOf lists the sentinels err wraps (context errors included).
func sentinelsOf(err error) []string {
	var got []string
	for _, s := range append(sentinels, context.Canceled, context.DeadlineExceeded) {
		if errors.Is(err, s) {
			got = append(got, s.Error())
		}
	}
	return got
}

// TestErrorsWrapOneSentinel drives every error path it can reach cheaply and
// asserts that each error wraps exactly the one sentinel it means (a lock
// timeout wraps ErrLockTimeout and the context's error, which is its cause).
// The negative control: an unclassified operating-system error wraps none,
// and the check says so.
func TestErrorsWrapOneSentinel(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, db := newTestStore(t, WithLockTimeout(200*time.Millisecond))
	id := mustInsert(t, s, Values{"name": "a"})
	if err := s.CreateIndex(ctx, "name", Unique()); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.Get(ctx, id)
	if _, err := s.Update(ctx, rec, Values{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, []byte("x"), 0o644)
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("garbage!", 1024)), 0o644)
	linked := filepath.Join(dir, "linked.db")
	if l, err := Create(ctx, linked, testFields); err != nil {
		t.Fatal(err)
	} else {
		l.Close()
	}
	os.Link(linked, linked+".2")
	fifo := filepath.Join(dir, "fifo.db")
	syscall.Mkfifo(fifo, 0o644)
	newer := filepath.Join(dir, "newer.db")
	if n, err := Create(ctx, newer, testFields); err != nil {
		t.Fatal(err)
	} else {
		n.Close()
	}
	putRaw(t, newer, bucketMeta, []byte(keyMinRead), []byte{0, 0, 0, 99})
	closed, _ := Open(ctx, db)
	closed.Close()

	cases := []struct {
		name string
		want error
		run  func() error
	}{
		{"open under a regular file", ErrNotExist, func() error { _, err := Open(ctx, filepath.Join(file, "x.db")); return err }},
		{"create under a regular file", ErrNotExist, func() error {
			_, err := Create(ctx, filepath.Join(file, "x.db"), testFields)
			return err
		}},
		{"open missing", ErrNotExist, func() error { _, err := Open(ctx, filepath.Join(dir, "none.db")); return err }},
		{"open a directory", ErrNotExist, func() error { _, err := Open(ctx, dir); return err }},
		{"open empty path", ErrNotExist, func() error { _, err := Open(ctx, ""); return err }},
		{"create existing", ErrExists, func() error { _, err := Create(ctx, db, testFields); return err }},
		{"open garbage", ErrCorrupt, func() error { _, err := Open(ctx, garbage); return err }},
		{"open hard-linked", ErrUnsafePath, func() error { _, err := Open(ctx, linked); return err }},
		{"open a FIFO", ErrUnsafePath, func() error { _, err := Open(ctx, fifo); return err }},
		{"open newer", ErrNewerFormat, func() error { _, err := Open(ctx, newer); return err }},
		{"get missing", ErrNotFound, func() error { _, err := s.Get(ctx, 999); return err }},
		{"update stale", ErrConflict, func() error { _, err := s.Update(ctx, rec, Values{"n": int64(2)}); return err }},
		{"duplicate", ErrDuplicate, func() error { _, err := s.Insert(ctx, Values{"name": "a"}); return err }},
		{"wrong type", ErrSchema, func() error { _, err := s.Insert(ctx, Values{"n": "seven"}); return err }},
		{"unknown field", ErrSchema, func() error { _, err := s.Insert(ctx, Values{"nope": 1}); return err }},
		{"bad utf-8", ErrSchema, func() error { _, err := s.Insert(ctx, Values{"name": "\xff"}); return err }},
		{"index key too large", ErrSchema, func() error {
			_, err := s.Insert(ctx, Values{"name": strings.Repeat("k", 40000)})
			return err
		}},
		{"closed", ErrClosed, func() error { _, err := closed.Get(ctx, 1); return err }},
		{"tx done", ErrTxDone, func() error {
			tx, err := s.Begin(ctx, false)
			if err != nil {
				return err
			}
			tx.Rollback()
			_, err = tx.Get(id)
			return err
		}},
		{"lock timeout", ErrLockTimeout, func() error {
			other, err := Open(ctx, db, WithLockTimeout(0))
			if err != nil {
				return err
			}
			tx, err := s.Begin(ctx, true)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_, err = other.Insert(tctx, Values{"name": "b"})
			return err
		}},
		{"check a damaged store", ErrCorrupt, func() error {
			d, ddb := newTestStore(t)
			for i := range 30 {
				mustInsert(t, d, Values{"name": strings.Repeat("r", i+1)})
			}
			if _, err := d.Cleanup(ctx); err != nil {
				return err
			}
			flipRecordByte(t, ddb, 7)
			_, err := d.Check(ctx)
			return err
		}},
	}
	for _, c := range cases {
		err := c.run()
		got := sentinelsOf(err)
		want := []string{c.want.Error()}
		if c.want == ErrLockTimeout {
			want = append(want, context.DeadlineExceeded.Error())
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: %v wraps %q, want %q", c.name, err, got, want)
		}
	}

	// Negative control: an error nobody classified wraps no sentinel.
	if got := sentinelsOf(&os.PathError{Op: "open", Path: "x", Err: syscall.EIO}); len(got) != 0 {
		t.Errorf("negative control: a bare EIO wraps %q", got)
	}
}

package psbase

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/psbase/psbase/internal/lock"
)

// TestLockErrorsMapped: every condition internal/lock reports comes out of
// the seam (fromLock) wrapping psbase's sentinel, with its message and its
// chain unchanged; the timeout becomes a *LockTimeoutError that reads as
// internal/lock's does.
func TestLockErrorsMapped(t *testing.T) {
	all := []error{lock.ErrUnsupportedFS, lock.ErrUnsafePath, lock.ErrReadOnly, lock.ErrNotExist, lock.ErrUnknownOutcome}
	if len(all) != len(lockSentinels) {
		t.Fatalf("%d conditions, %d mapped", len(all), len(lockSentinels))
	}
	for i, m := range lockSentinels {
		if m.lock != all[i] {
			t.Errorf("mapping %d is for %v, want %v", i, m.lock, all[i])
		}
		if m.lock.Error() != m.psbase.Error() {
			t.Errorf("lock's %q reads differently from psbase's %q", m.lock, m.psbase)
		}
		cause := fmt.Errorf("%w: lock file /x.lock: %w", m.lock, fs.ErrPermission)
		err := fromLock(cause)
		if !errors.Is(err, m.psbase) || !errors.Is(err, m.lock) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("fromLock(%v) = %v: lost a sentinel or the cause", cause, err)
		}
		if err.Error() != cause.Error() {
			t.Errorf("fromLock changed the message %q to %q", cause, err)
		}
		n := 0
		for _, s := range sentinels {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("fromLock(%v) wraps %d of psbase's sentinels, want 1", cause, n)
		}
	}
	plain := errors.New("flock /x.lock: input/output error")
	if fromLock(plain) != plain || fromLock(nil) != nil {
		t.Error("fromLock changed an error without a condition")
	}

	since := time.Date(2025, 11, 22, 4, 41, 0, 0, time.UTC)
	te := &lock.TimeoutError{Path: "/x.lock", Op: "insert", Exclusive: true, Waited: 300 * time.Millisecond,
		Holders: []lock.Holder{{PID: 42, Exclusive: true, Op: "compact", Since: since}, {PID: 43, Waiting: true}},
		Err:     context.DeadlineExceeded}
	err := fromLock(te)
	var lte *LockTimeoutError
	if !errors.As(err, &lte) || !errors.Is(err, ErrLockTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fromLock(timeout) = %#v", err)
	}
	if lte.Path != te.Path || lte.Op != te.Op || !lte.Exclusive || lte.Waited != te.Waited ||
		len(lte.Holders) != 2 || lte.Holders[0] != LockHolder(te.Holders[0]) {
		t.Errorf("fields not carried over: %+v", lte)
	}
	if err.Error() != te.Error() || lte.Holders[0].String() != te.Holders[0].String() {
		t.Errorf("messages differ:\n%s\n%s", err, te)
	}
}

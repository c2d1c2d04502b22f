package lock

// May touch: nothing (error values).

// errors.go: the conditions the lock reports. Each sentinel has the text of
// the psbase sentinel of the same name, so that a message reads the same
// once psbase has mapped the error to its own sentinel (locks.go in the
// root); this package cannot import psbase's, which would be a cycle.

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrTimeout: the lock could not be had before the context was done.
	// The concrete error is a *TimeoutError (psbase.ErrLockTimeout).
	ErrTimeout = errors.New("lock timeout")
	// ErrUnsupportedFS: the store's directory is on a file system whose
	// locks cannot be trusted, or flock fails there (psbase.ErrUnsupportedFS).
	ErrUnsupportedFS = errors.New("file system does not support reliable locks")
	// ErrUnsafePath: a lock or gate file is a link, not a regular file, or
	// owned by a stranger (psbase.ErrUnsafePath).
	ErrUnsafePath = errors.New("unsafe store path")
	// ErrReadOnly: a lock file cannot be created or written
	// (psbase.ErrReadOnly).
	ErrReadOnly = errors.New("read-only")
	// ErrNotExist: no store, so no lock file was created (psbase.ErrNotExist).
	ErrNotExist = errors.New("store does not exist")
	// ErrUnknownOutcome: the lock file held was deleted or replaced during
	// the hold (psbase.ErrUnknownOutcome).
	ErrUnknownOutcome = errors.New("outcome of the write is unknown")
)

// TimeoutError is the concrete error behind ErrTimeout: which lock, in
// which mode, for how long, and who held it when the wait was abandoned.
// psbase.LockTimeoutError has the same fields.
type TimeoutError struct {
	Path      string        // the lock file
	Op        string        // the operation that waited
	Exclusive bool          // the mode that was wanted
	Waited    time.Duration // how long it waited
	Holders   []Holder      // holders at the time of giving up (may be empty)
	Err       error         // context.DeadlineExceeded or context.Canceled
}

func (e *TimeoutError) Error() string {
	mode := "shared"
	if e.Exclusive {
		mode = "exclusive"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "lock timeout: %s lock on %s not acquired after %s", mode, e.Path, e.Waited.Round(time.Millisecond))
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	var held []string
	for _, h := range e.Holders {
		if !h.Waiting {
			held = append(held, h.String())
		}
	}
	if len(held) > 0 {
		fmt.Fprintf(&b, "; held by %s", strings.Join(held, ", "))
	} else {
		b.WriteString("; holder unknown")
	}
	return b.String()
}

// Is reports ErrTimeout.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Unwrap returns the context's error, so errors.Is(err, context.Canceled) works.
func (e *TimeoutError) Unwrap() error { return e.Err }

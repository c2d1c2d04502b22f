package psbase

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Sentinel errors. Every error returned by a Store or Tx method wraps exactly one
// of these (test with errors.Is) inside an *Error that names the store and the
// operation, so a message always reads "psbase: insert /data/jobs.db: ...".
var (
	// ErrNotFound: no record with that ID (or key).
	ErrNotFound = errors.New("record not found")
	// ErrConflict: Update was given a record whose Version is not the stored one:
	// another writer updated it first (Buzhug's ConflictError).
	ErrConflict = errors.New("version conflict")
	// ErrLockTimeout: the store's lock could not be had before the context's
	// deadline, the lock timeout, or a cancel. The concrete error is a
	// *LockTimeoutError naming the holder when the OS tells.
	ErrLockTimeout = errors.New("lock timeout")
	// ErrClosed: the Store handle was closed.
	ErrClosed = errors.New("store is closed")
	// ErrExists: Create found a store at the path (see WithOverwrite).
	ErrExists = errors.New("store already exists")
	// ErrNotExist: Open found no store at the path (see WithCreate).
	ErrNotExist = errors.New("store does not exist")
	// ErrSchema: unknown field, wrong type, bad or reserved name, missing value
	// for a non-nullable field, an attempt to set ID or Version.
	ErrSchema = errors.New("schema violation")
	// ErrCorrupt: the file is not a psbase store, or a record or page failed its
	// checks (CRC32C, decoding, bbolt consistency).
	ErrCorrupt = errors.New("store is corrupt")
	// ErrReadOnly: a write was attempted in a read-only transaction, or the
	// file or its directory cannot be written.
	ErrReadOnly = errors.New("read-only")
	// ErrDuplicate: a unique index already holds the value.
	ErrDuplicate = errors.New("duplicate value for unique index")
	// ErrTxDone: the transaction was already committed or rolled back.
	ErrTxDone = errors.New("transaction already committed or rolled back")
	// ErrUnsupportedFS: the store lives on a file system whose locks cannot be
	// trusted (NFS, SMB, FUSE...). See WithAllowNetworkFS.
	ErrUnsupportedFS = errors.New("file system does not support reliable locks")
)

// Error is the error type of every failed Store and Tx method. It names the
// operation and the store; Err carries the cause and wraps one sentinel.
type Error struct {
	Op   string // the method: "insert", "open", "cleanup", ...
	Path string // the store's path
	Err  error  // the cause; errors.Is(err, ErrX) looks through it
}

func (e *Error) Error() string {
	return fmt.Sprintf("psbase: %s %s: %v", e.Op, e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// wrapErr returns err wrapped in an *Error for op on path, or nil. An err that
// is already an *Error is returned as it is, so nested calls do not stutter.
func wrapErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	return &Error{Op: op, Path: path, Err: err}
}

// errorf builds a cause that wraps sentinel: errorf(ErrSchema, "field %q ...", f).
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// LockHolder describes one process that holds, or waits for, a store's lock.
type LockHolder struct {
	PID       int       // process ID, 0 when unknown
	Exclusive bool      // exclusive (write) or shared (read)
	Waiting   bool      // true: blocked waiting for the lock, not holding it
	Op        string    // the operation, when the holder recorded it
	Host      string    // the host name, when recorded
	Since     time.Time // when it took the lock, when recorded
	Command   string    // the process's command line, when the OS tells
}

func (h LockHolder) String() string {
	var b strings.Builder
	if h.PID > 0 {
		fmt.Fprintf(&b, "pid %d", h.PID)
	} else {
		b.WriteString("unknown process")
	}
	if h.Command != "" {
		fmt.Fprintf(&b, " (%s)", h.Command)
	}
	mode := "shared"
	if h.Exclusive {
		mode = "exclusive"
	}
	if h.Waiting {
		fmt.Fprintf(&b, " waiting for %s", mode)
	} else {
		fmt.Fprintf(&b, " holding %s", mode)
	}
	if h.Op != "" {
		fmt.Fprintf(&b, " for %s", h.Op)
	}
	if !h.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", h.Since.Format(time.RFC3339Nano))
	}
	return b.String()
}

// LockTimeoutError is the concrete error behind ErrLockTimeout: which lock, in
// which mode, for how long, and who held it when the wait was abandoned.
type LockTimeoutError struct {
	Path      string        // the lock file
	Op        string        // the operation that waited
	Exclusive bool          // the mode that was wanted
	Waited    time.Duration // how long it waited
	Holders   []LockHolder  // holders at the time of giving up (may be empty)
	Err       error         // context.DeadlineExceeded or context.Canceled
}

func (e *LockTimeoutError) Error() string {
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

// Is reports ErrLockTimeout.
func (e *LockTimeoutError) Is(target error) bool { return target == ErrLockTimeout }

// Unwrap returns the context's error, so errors.Is(err, context.Canceled) works.
func (e *LockTimeoutError) Unwrap() error { return e.Err }

// classifyIOError maps a file-system error to a sentinel where one fits.
func classifyIOError(err error) error {
	var re runtime.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return errorf(ErrCorrupt, "%v", err)
	case isPermission(err), isReadOnlyFS(err):
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	}
	return err
}

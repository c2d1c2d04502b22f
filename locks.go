package psbase

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// LockHolder describes one process that holds, or waits for, a store's lock.
type LockHolder struct {
	PID       int  // process ID, 0 when unknown
	Exclusive bool // exclusive (write) or shared (read)
	Waiting   bool // true: blocked waiting for the lock, not holding it
	// Gate: the entry is for the turnstile gate (<db>.gate), not the data
	// lock. A gate holder is the writer next in line: every process that
	// arrives after it waits behind it, so a stopped one blocks them all.
	Gate    bool
	Op      string    // the operation, when the holder recorded it
	Host    string    // the host name, when recorded
	Since   time.Time // when it took the lock, when recorded
	Command string    // the process's command line, when the OS tells
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
	switch {
	case h.Gate && h.Waiting:
		b.WriteString(" waiting at the gate")
	case h.Gate:
		b.WriteString(" holding the gate (next writer in line)")
	case h.Waiting:
		fmt.Fprintf(&b, " waiting for %s", mode)
	default:
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

// LockHolders reports who holds and who waits for the lock of the store at
// dbPath right now. On Linux it reads /proc/locks (flock entries on the lock
// file's device and inode; waiters are the "->" lines) and each process's
// command line, and merges in the record the exclusive holder wrote into the
// lock file (pid, host, operation, start time). Elsewhere only the record is
// known, and it is reported only while some process holds the lock
// exclusively. On Linux the processes at the turnstile gate are listed too,
// with Gate set. A symbolic link to a store is followed to the real file,
// as Open does. A store without a lock file has no holders; a lock file that
// is not a regular file is an error wrapping ErrUnsafePath.
func LockHolders(dbPath string) ([]LockHolder, error) {
	real, err := resolvePath(dbPath) // the lock files sit beside the real file
	if errors.Is(err, ErrNotExist) || errors.Is(err, ErrUnsafePath) {
		return nil, nil // no store there, so no holders
	}
	if err != nil {
		return nil, err
	}
	return lockHolders(real + ".lock")
}

package psbase

// May touch: nothing itself; it calls internal/lock (the lock files).

// locks.go: the public face of the cross-process lock, which lives in
// internal/lock, and the seam to it. internal/lock cannot import this
// package, so its errors wrap its own sentinels; fromLock gives them
// psbase's on their way out, and LockHolder and LockTimeoutError are its
// Holder and TimeoutError, field for field.

import (
	"errors"
	"time"

	"github.com/psbase/psbase/internal/lock"
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
	// Lease is a remote store's name for the holder's session (etcd: its
	// lease ID in hex, what etcdctl lease revoke takes); empty for a local
	// store. A remote holder's PID is a process on Host.
	Lease string
}

func (h LockHolder) String() string { return lock.Holder(h).String() }

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
	holders := make([]lock.Holder, len(e.Holders))
	for i, h := range e.Holders {
		holders[i] = lock.Holder(h)
	}
	return (&lock.TimeoutError{Path: e.Path, Op: e.Op, Exclusive: e.Exclusive,
		Waited: e.Waited, Holders: holders, Err: e.Err}).Error()
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
	hs, err := lock.Holders(real + ".lock")
	return lockHolders(hs), fromLock(err)
}

// lockHolders converts internal/lock's holders (nil stays nil).
func lockHolders(hs []lock.Holder) []LockHolder {
	if hs == nil {
		return nil
	}
	out := make([]LockHolder, len(hs))
	for i, h := range hs {
		out[i] = LockHolder(h)
	}
	return out
}

// lockSentinels pairs each condition internal/lock reports with the
// sentinel it means here; the texts are the same (TestLockErrorsMapped).
var lockSentinels = []struct{ lock, psbase error }{
	{lock.ErrUnsupportedFS, ErrUnsupportedFS},
	{lock.ErrUnsafePath, ErrUnsafePath},
	{lock.ErrReadOnly, ErrReadOnly},
	{lock.ErrNotExist, ErrNotExist},
	{lock.ErrUnknownOutcome, ErrUnknownOutcome},
}

// fromLock gives an error of internal/lock psbase's sentinel: every call
// into internal/lock that can fail passes its error through here. A
// *lock.TimeoutError becomes a *LockTimeoutError; an error wrapping one of
// lock's sentinels wraps psbase's too, its message unchanged; any other
// error (of the operating system) is left to classifyIOError.
func fromLock(err error) error {
	if err == nil {
		return nil // before te is declared: &te escapes, and would cost an allocation per call
	}
	var te *lock.TimeoutError
	switch {
	case errors.As(err, &te):
		return &LockTimeoutError{Path: te.Path, Op: te.Op, Exclusive: te.Exclusive,
			Waited: te.Waited, Holders: lockHolders(te.Holders), Err: te.Err}
	}
	for _, m := range lockSentinels {
		if errors.Is(err, m.lock) {
			return &lockError{err: err, sentinel: m.psbase}
		}
	}
	return err
}

// lockError is an error of internal/lock that wraps the sentinel of its
// condition: its message and its chain are the original's.
type lockError struct {
	err      error
	sentinel error
}

func (e *lockError) Error() string        { return e.err.Error() }
func (e *lockError) Unwrap() error        { return e.err }
func (e *lockError) Is(target error) bool { return target == e.sentinel }

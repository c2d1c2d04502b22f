package psbase

// May touch: nothing (error values and their classification).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"

	"github.com/psbase/psbase/internal/boltwalk"
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
	// ErrNotExist: Open found no store at the path (see WithCreate). It
	// also matches fs.ErrNotExist.
	ErrNotExist error = notExistError{}
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
	// ErrUnsafePath: a store file or lock file is a symbolic or hard link, a
	// FIFO or other non-regular file, a mount point, or owned by another user:
	// psbase refuses to read or write through it rather than touch a file
	// outside the store.
	ErrUnsafePath = errors.New("unsafe store path")
	// ErrNoSpace: the disk (or the user's quota, or the file system's inodes)
	// is full; nothing was written.
	ErrNoSpace = errors.New("no space left")
	// ErrNewerFormat: the store was written in a newer file format than this
	// psbase knows (FormatVersion); it was not changed. Upgrade psbase.
	ErrNewerFormat = errors.New("store format is newer than this psbase")
	// ErrUnknownOutcome: a write may or may not have been applied — its commit
	// happened, but the file it went into is no longer the store (its lock or
	// database file was replaced meanwhile), or the caller's deadline passed
	// while another process was committing it. Read the store to find out.
	ErrUnknownOutcome = errors.New("outcome of the write is unknown")
	// ErrOption: an option was given to a function it means nothing to
	// (WithOverwrite to Open, say): nothing was done.
	ErrOption = errors.New("option does not apply")
	// ErrUnsupported: the operation needs what this store does not have —
	// a local file (Cleanup, Backup, Restore, Recover, LockHolders on a
	// remote store), or a backend for its URL's scheme linked into the
	// program. Nothing was done.
	ErrUnsupported = errors.New("not supported by this store")
	// ErrChangesGone: Changes or Watch was asked for the changes after a
	// revision that the store's change log no longer holds (trimmed to its
	// retention, the store restored from a backup or replaced): read the
	// records afresh and continue from the revision that the error's
	// *ChangesGoneError carries.
	ErrChangesGone = errors.New("changes no longer in the change log")
	// ErrTxTooLarge: a transaction is above a limit of the backend that
	// would commit it (on etcd, the server's operations per transaction or
	// request size); the error names the limit, and nothing was written.
	ErrTxTooLarge = errors.New("transaction too large")
	// ErrUnavailable: a remote store's servers did not answer (no endpoint
	// within the dial timeout or the caller's deadline), or a read's
	// snapshot was compacted away before the transaction finished. Nothing
	// was written: a commit that was sent and never answered is
	// ErrUnknownOutcome instead. Retry later.
	ErrUnavailable = errors.New("store unavailable")
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

// wrapErr is the one classification point: every error a public method
// returns passes through it on its way out. It gives err its sentinel (see
// classifyIOError) and wraps it in an *Error for op on path. An err that is
// already an *Error is returned as it is, so nested calls do not stutter.
//
// The rule: every failure psbase can foresee wraps exactly one of the
// sentinels above, or the context's error (context.Canceled,
// context.DeadlineExceeded) for a transaction cut short by its context. An
// operating-system error psbase has no sentinel for (an I/O error of the
// disk, say) is returned wrapped in *Error but with no sentinel; the test
// of the error paths (TestErrorsWrapOneSentinel) drives every path it can
// reach and asserts exactly one.
func wrapErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	return &Error{Op: op, Path: path, Err: classifyIOError(err)}
}

// notExistError is ErrNotExist: errors.Is(err, fs.ErrNotExist) holds too.
type notExistError struct{}

func (notExistError) Error() string { return "store does not exist" }

// Is makes ErrNotExist match fs.ErrNotExist.
func (notExistError) Is(target error) bool { return target == fs.ErrNotExist }

// DuplicateError is the error of a write refused by a unique index: it
// matches ErrDuplicate, and names the field, the value and the record that
// holds it (errors.As).
type DuplicateError struct {
	Field      string
	Value      any
	ExistingID uint64
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%v: field %q value %s is already used by record %d", ErrDuplicate, e.Field, shortValue(e.Value), e.ExistingID)
}

// Is makes a *DuplicateError match ErrDuplicate.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// ConflictError is the error of an Update given a stale record: it matches
// ErrConflict, and names the record, the version the caller read (Have) and
// the version the store holds (Want).
type ConflictError struct {
	ID   uint64
	Have uint64
	Want uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v: record %d: you read version %d, the store holds version %d", ErrConflict, e.ID, e.Have, e.Want)
}

// Is makes a *ConflictError match ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// sentinels lists every sentinel, for classification and its test.
//
// Its order is part of the group-commit queue's format (FORMAT.md: a
// result's error code is a position in it): only append.
var sentinels = []error{
	ErrNotFound, ErrConflict, ErrLockTimeout, ErrClosed, ErrExists, ErrNotExist,
	ErrSchema, ErrCorrupt, ErrReadOnly, ErrDuplicate, ErrTxDone, ErrUnsupportedFS,
	ErrUnsafePath, ErrNoSpace, ErrNewerFormat, ErrUnknownOutcome, ErrOption,
	ErrUnsupported,
	ErrChangesGone,
	ErrTxTooLarge,
	ErrUnavailable,
}

// hasSentinel reports whether err already wraps a sentinel or a context error.
func hasSentinel(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// classifyIOError maps an error of the operating system or of bbolt to the
// sentinel it means; an error that already has one is returned unchanged.
func classifyIOError(err error) error {
	var re runtime.Error
	switch {
	case err == nil:
		return nil
	case hasSentinel(err):
		return err
	case errors.As(err, &re):
		return errorf(ErrCorrupt, "%v", err)
	case errors.Is(err, boltwalk.ErrDamaged): // a page bbolt would free (boltkv/frees.go)
		return errorf(ErrCorrupt, "%v: nothing was written; run Check", err)
	case isNoSpace(err):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	case errors.Is(err, fs.ErrPermission), isReadOnlyFS(err):
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	case isLoop(err):
		return fmt.Errorf("%w: %w", ErrUnsafePath, err)
	case errors.Is(err, fs.ErrNotExist), isNotDir(err):
		return fmt.Errorf("%w: %w", ErrNotExist, err)
	case isBoltTimeout(err):
		return fmt.Errorf("%w: bbolt's own file lock is held by a program that does not use psbase's lock: %w", ErrLockTimeout, err)
	case isBoltFormatError(err):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	case isBoltSizeError(err):
		return fmt.Errorf("%w: %w", ErrSchema, err)
	}
	return err
}

// errorf builds a cause that wraps sentinel: errorf(ErrSchema, "field %q ...", f).
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

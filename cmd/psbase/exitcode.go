package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/psbase/psbase"
)

// Exit codes. They are part of the command's interface (documented in
// README.md and in "psbase --help"): a script branches on them.
//
// Code 2 is deliberately not used: it is what the Go runtime exits with when
// a process dies of an unrecovered panic or a fatal error (a stack overflow,
// a fault in a goroutine that cannot be recovered), so a script must be able
// to tell such a crash from a mistake on the command line. Usage errors take
// 64, sysexits' EX_USAGE, and a panic the command itself recovers exits 70
// (EX_SOFTWARE).
const (
	exitOK             = 0  // success
	exitError          = 1  // any other error (I/O, permission, read-only file system...)
	exitCrash          = 2  // the Go runtime's own code for a crash; never returned by run
	exitNotFound       = 3  // no record with that ID (or key)
	exitConflict       = 4  // version conflict (update --if-version)
	exitDuplicate      = 5  // a unique index already holds the value
	exitTimeout        = 6  // the store's lock could not be had in --timeout
	exitCorrupt        = 7  // corrupt store, or not a psbase store; check found problems; recover lost records
	exitNoStore        = 8  // no store at that path
	exitExists         = 9  // create: a store is already there (use --force)
	exitFailures       = 10 // storm: at least one copy failed or timed out
	exitNewerFormat    = 11 // the store was written by a newer psbase
	exitNoSpace        = 12 // no space (or no inodes) left on the device
	exitUnsafePath     = 13 // the store's path or one of its lock files is a link, FIFO, foreign file...
	exitUnknownOutcome = 14 // a write may or may not have been applied (the store was replaced under it)
	exitUnsupported    = 15 // the store cannot do that (a local-only command on a remote store, no backend for a URL)
	exitTxTooLarge     = 16 // a transaction above the backend's limits (etcd); nothing was written
	exitChangesGone    = 17 // watch: the changes after --since are no longer in the change log
	exitUnavailable    = 18 // a store URL's servers did not answer (or a read's snapshot was compacted); nothing was written
	exitUsage          = 64 // bad command line: flag, argument, filter, value, unknown field, schema rule
	exitInternal       = 70 // a bug in psbase: a panic that the command recovered
	exitSignal         = 130
)

const exitCodeTable = `Exit codes:
  0   success
  1   other error (I/O, permission, read-only file system, ...)
  2   the process crashed (the Go runtime's exit code): the store is unchanged
      or holds whole transactions only; run "psbase check"
  3   record not found
  4   version conflict (update --if-version)
  5   duplicate value for a unique index
  6   lock timeout (another process held the store's lock for --timeout)
  7   corrupt store or not a psbase store (check found problems; recover
      could not save every record)
  8   no store at that path
  9   a store already exists there (create without --force)
  10  storm: at least one copy failed or timed out
  11  the store's format is newer than this psbase (upgrade psbase)
  12  no space or no inodes left on the device
  13  unsafe path: the store or a lock file is a link, FIFO, directory or
      another user's file
  14  outcome unknown: the store was replaced or its lock file deleted while
      the write committed; read it back before retrying
  15  not supported by this store (a command that needs a local file, on a
      remote store; or no backend for the URL's scheme)
  16  transaction too large for the backend's limits; nothing was written
  17  watch: the changes after --since left the change log; resync
  18  store unavailable: no endpoint of a store URL answered within the dial
      timeout or --timeout (or a read's snapshot was compacted); nothing was
      written; retry later
  64  usage error: bad flag or argument, bad filter, bad value for a field's
      type, unknown field, schema rule broken
  70  internal error (a bug in psbase; please report it)
  130 interrupted (Ctrl-C or SIGTERM)`

// usageError is a mistake on the command line: exit code 64.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError carries an explicit exit code (storm's failures, check's
// problems) with an optional message.
type codeError struct {
	code int
	msg  string
}

func (e *codeError) Error() string { return e.msg }

// exitCode maps an error to the documented exit code.
func exitCode(err error) int {
	var ue *usageError
	var ce *codeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, psbase.ErrUnknownOutcome):
		return exitUnknownOutcome
	case errors.Is(err, psbase.ErrUnsupported):
		return exitUnsupported
	case errors.Is(err, psbase.ErrTxTooLarge):
		return exitTxTooLarge
	case errors.Is(err, psbase.ErrChangesGone):
		return exitChangesGone
	case errors.Is(err, psbase.ErrUnavailable):
		if errors.Is(err, context.Canceled) {
			return exitSignal
		}
		return exitUnavailable
	case errors.Is(err, psbase.ErrNewerFormat):
		return exitNewerFormat
	case errors.Is(err, psbase.ErrNoSpace):
		return exitNoSpace
	case errors.Is(err, psbase.ErrUnsafePath):
		return exitUnsafePath
	case errors.Is(err, psbase.ErrNotFound):
		return exitNotFound
	case errors.Is(err, psbase.ErrConflict):
		return exitConflict
	case errors.Is(err, psbase.ErrDuplicate):
		return exitDuplicate
	case errors.Is(err, psbase.ErrLockTimeout):
		if errors.Is(err, context.Canceled) {
			return exitSignal
		}
		return exitTimeout
	case errors.Is(err, psbase.ErrCorrupt):
		return exitCorrupt
	case errors.Is(err, psbase.ErrNotExist):
		return exitNoStore
	case errors.Is(err, psbase.ErrExists):
		return exitExists
	case errors.Is(err, psbase.ErrSchema), errors.Is(err, psbase.ErrOption):
		return exitUsage
	case errors.Is(err, context.Canceled):
		return exitSignal
	case errors.Is(err, context.DeadlineExceeded):
		return exitTimeout
	}
	return exitError
}

// errorMessage renders err for stderr. The library's errors already read
// "psbase: op path: cause"; others get the "psbase: " prefix.
func errorMessage(err error) string {
	var pe *psbase.Error
	if errors.As(err, &pe) && pe == err {
		return err.Error()
	}
	return "psbase: " + err.Error()
}

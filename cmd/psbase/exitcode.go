package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/psbase/psbase"
)

// Exit codes. They are part of the command's interface (documented in
// README.md and in "psbase --help"): a script branches on them.
const (
	exitOK        = 0  // success
	exitError     = 1  // any other error (I/O, permission, read-only file system...)
	exitUsage     = 2  // bad command line: flag, argument, filter, value, unknown field, schema rule
	exitNotFound  = 3  // no record with that ID (or key)
	exitConflict  = 4  // version conflict (update --if-version)
	exitDuplicate = 5  // a unique index already holds the value
	exitTimeout   = 6  // the store's lock could not be had in --timeout
	exitCorrupt   = 7  // corrupt store, or not a psbase store; check found problems
	exitNoStore   = 8  // no store at that path
	exitExists    = 9  // create: a store is already there (use --force)
	exitFailures  = 10 // storm: at least one copy failed or timed out
	exitSignal    = 130
)

const exitCodeTable = `Exit codes:
  0   success
  1   other error (I/O, permission, read-only file system, ...)
  2   usage error: bad flag or argument, bad filter, bad value for a field's
      type, unknown field, schema rule broken
  3   record not found
  4   version conflict (update --if-version)
  5   duplicate value for a unique index
  6   lock timeout (another process held the store's lock for --timeout)
  7   corrupt store or not a psbase store (check found problems)
  8   no store at that path
  9   a store already exists there (create without --force)
  10  storm: at least one copy failed or timed out
  130 interrupted`

// usageError is a mistake on the command line: exit code 2.
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
	case errors.Is(err, psbase.ErrSchema):
		return exitUsage
	case errors.Is(err, context.Canceled):
		return exitSignal
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

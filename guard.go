package psbase

// guard.go: the one rule that keeps a damaged file from crashing the process.
//
// bbolt reads its pages straight from a memory mapping and trusts them: on a
// damaged file it panics (index out of range, "invalid page type", nil
// dereferences) or touches memory beyond the mapping (a fault, which
// debug.SetPanicOnFault turns into a panic instead of killing the process;
// the setting is per goroutine). The rule, written once here:
//
//   - Every Tx method begins with tx.enter and defers tx.exit. exit turns a
//     bbolt panic or fault into ErrCorrupt and marks the Tx broken; a broken Tx
//     can only be rolled back, and its bbolt handle is abandoned, never closed
//     (see boltFile.abandon: after a panic bbolt still holds its own mutexes).
//   - Code outside a Tx that touches the mapping (opening a file, verifying a
//     format, compaction, Check) runs inside guarded, which does the same for
//     a function.
//   - User code (a Match predicate, a ForEach callback, a progress callback)
//     runs inside callUser, so its panic passes through every guard as it was,
//     is re-raised after the transaction is rolled back and the lock released,
//     and is never mistaken for damage.
//
// May touch: nothing but the goroutine's fault setting.

import (
	"runtime/debug"
)

// userPanic carries a panic raised by user code through the guards untouched.
type userPanic struct{ v any }

// callUser runs user code so that its panic is re-raised as it was, not
// mistaken for a panic of bbolt on a damaged file.
func callUser[T any](fn func() T) T {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(userPanic); ok {
				panic(p)
			}
			panic(userPanic{p})
		}
	}()
	return fn()
}

// enter is the preamble of every Tx method: it refuses a finished
// transaction (ErrTxDone), a write in a read-only one (ErrReadOnly) and one
// whose storage already failed (ErrCorrupt), and turns memory faults into
// panics for the duration of the call. The caller defers exit(old, &err).
func (tx *Tx) enter(write bool) (old bool, err error) {
	switch {
	case tx.done.Load():
		return false, ErrTxDone
	case tx.broken:
		return false, errorf(ErrCorrupt, "the transaction was abandoned after the file failed to read")
	case write && !tx.write:
		return false, errorf(ErrReadOnly, "write in a read-only transaction")
	}
	if err := tx.stopped(); err != nil {
		return false, err
	}
	tx.depth++
	return debug.SetPanicOnFault(true), nil
}

// exit ends a Tx method begun with enter (see the rule above).
func (tx *Tx) exit(old bool, err *error) {
	debug.SetPanicOnFault(old)
	tx.depth--
	p := recover()
	if p == nil {
		return
	}
	if u, ok := p.(userPanic); ok {
		if tx.depth == 0 {
			panic(u.v) // back in user code: the panic as it was raised
		}
		panic(u)
	}
	tx.broken = true
	*err = errorf(ErrCorrupt, "bbolt failed on the file: %v", p)
}

// guarded runs fn, which touches a bbolt mapping outside any Tx, under the
// same rule: a bbolt panic or fault becomes ErrCorrupt and h (if not nil) is
// abandoned, so the caller must not use or close it afterwards.
func guarded(h *boltFile, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		p := recover()
		if p == nil {
			return
		}
		if u, ok := p.(userPanic); ok {
			panic(u.v)
		}
		if h != nil {
			h.abandon()
		}
		err = errorf(ErrCorrupt, "bbolt failed on the file: %v", p)
	}()
	return fn()
}

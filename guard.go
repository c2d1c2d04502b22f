package psbase

import "runtime/debug"

// userPanic carries a panic raised by user code (a Match predicate, a
// ForEach callback) through guardPanic untouched.
type userPanic struct{ v any }

// callUser runs user code so that its panic is re-raised as it was, not
// mistaken for a panic of bbolt on a corrupt file.
func callUser[T any](fn func() T) T {
	defer func() {
		if p := recover(); p != nil {
			panic(userPanic{p})
		}
	}()
	return fn()
}

// guardPanic turns a panic inside bbolt (which panics on some corrupt pages)
// or a memory fault on the mmap (made a panic by debug.SetPanicOnFault) into
// ErrCorrupt. A user's panic is re-raised.
func guardPanic(err *error) {
	p := recover()
	if p == nil {
		return
	}
	if u, ok := p.(userPanic); ok {
		panic(u.v)
	}
	*err = errorf(ErrCorrupt, "bbolt failed on the file: %v", p)
}

// withFaultGuard runs fn with memory faults turned into panics, so a
// truncated or corrupt mmap cannot crash the process (see guardPanic).
func withFaultGuard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer guardPanic(&err)
	return fn()
}

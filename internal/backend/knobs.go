package backend

// knobs.go: deliberately broken variants of the root's remote operations,
// for the negative controls of the backend modules' tests (which cannot
// reach the root package's unexported state). Never set outside a test.
//
// May touch: nothing (flags in memory).

import "sync/atomic"

// WeakTornBackup, a test-only knob, makes a remote Backup read every key
// in a read-only transaction of its own (a new revision each time)
// instead of one snapshot: the torn copy the backup tests must catch.
var WeakTornBackup atomic.Bool

// WeakHideReadFailure, a test-only knob, makes a transaction whose function
// failed report the function's error even when a read of the backend had
// failed under it (the read failure hidden behind, say, ErrNotFound).
var WeakHideReadFailure atomic.Bool

// WeakNoRemoteWait, a test-only knob, drops a remote transaction's lock
// wait from Metrics and the observer's events.
var WeakNoRemoteWait atomic.Bool

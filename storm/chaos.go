package storm

import "time"

// Chaos describes faults the parent injects into a running storm. The zero
// value injects none. Kills and stops are sent to the task's whole process
// group. Not supported on Windows.
type Chaos struct {
	// KillFraction of the tasks (rounded to nearest, at least one if > 0) is
	// killed with SIGKILL, each at a random instant of KillWindow after the
	// release. The tasks and instants come from the storm's seed.
	KillFraction float64
	// KillWindow is the range of kill instants after the release; the zero
	// value means [0, 100ms].
	KillWindow Window
	// Replace starts a replacement task for each task that a kill took down,
	// right after the kill. Replacements are numbered from Procs upward, do
	// not wait at the barrier, get the Args of the task they replace and see
	// Worker.ReplacementOf. They are never killed themselves.
	Replace bool
	// Stops suspends chosen tasks for a while.
	Stops []Stop
}

// Window is a range of durations after a storm's release.
type Window struct{ From, To time.Duration }

// Stop sends SIGSTOP to task Task At after the release or, when Phase is set,
// at the first instant at or after At at which the task is in that phase
// (polled every half millisecond), and SIGCONT For later. A task that exits
// before the condition is met is not stopped.
type Stop struct {
	Task  int
	At    time.Duration
	Phase string
	For   time.Duration
}

package storm

import (
	"encoding/json"
	"time"
)

// Result is what a storm did, loop by loop.
type Result struct {
	Seed  uint64        // the seed used; STORM_SEED=<Seed> replays it
	Dir   string        // the artifacts directory (removed after a passing test unless Config.KeepArtifacts)
	Loops []*LoopResult // one per loop, in order
}

// LoopResult is one loop of a storm: Procs processes released together.
type LoopResult struct {
	Loop        int
	Dir         string        // the loop's shared directory (Worker.Dir)
	Tasks       []TaskResult  // tasks 0..Procs-1 by number, then replacements in start order
	Released    int64         // CLOCK_MONOTONIC instant at which the parent opened the barrier
	Skew        time.Duration // max - min of the release instants the original tasks took
	MaxInFlight int           // History.MaxInFlight()
	History     History       // all tasks' operations merged, ordered by invoke instant
	Kills       []Kill        // chaos kills, in order
	Stops       []StopRecord  // chaos stops, in order
	Wall        time.Duration // from the release to the exit of the last task
}

// TaskResult is what one child process did.
type TaskResult struct {
	Task          int
	ReplacementOf int // the killed task this one replaced, or -1
	Pid           int
	ExitCode      int    // -1 when killed by a signal or never started
	Err           string // why the task failed; empty if it succeeded or was killed by chaos
	Killed        bool   // killed by a chaos kill (not a failure)
	TimedOut      bool   // still running at the storm timeout and killed (a failure)
	Phase         string // the last phase the task entered (see Worker.Phase)
	Released      int64  // CLOCK_MONOTONIC instant the task took on release; 0 if unknown
	Duration      time.Duration
	Stderr        string          // the tail of the task's log (its stdout and stderr)
	Result        json.RawMessage // as given to Worker.SetResult; nil if none
}

// Failed reports whether the task failed: a non-zero exit, a body error, a
// panic, a crash, a timeout. A task killed by chaos did not fail.
func (t TaskResult) Failed() bool { return t.Err != "" }

// Kill is one chaos kill.
type Kill struct {
	Task   int
	Pid    int
	At     int64         // CLOCK_MONOTONIC instant of the kill(2)
	After  time.Duration // since the release
	Phase  string        // the phase the task was in when SIGKILL landed
	Landed bool          // the task died of the SIGKILL (false: it had already exited)
}

// StopRecord is one chaos stop: the task's process group was sent SIGSTOP and,
// For later, SIGCONT.
type StopRecord struct {
	Task  int
	Pid   int
	At    int64         // CLOCK_MONOTONIC instant of the SIGSTOP
	After time.Duration // since the release
	Phase string        // the phase the task was in when stopped
	For   time.Duration
}

// Failed returns the failed tasks of all loops.
func (r *Result) Failed() []TaskResult {
	var out []TaskResult
	for _, l := range r.Loops {
		out = append(out, l.Failed()...)
	}
	return out
}

// Failed returns the loop's failed tasks.
func (l *LoopResult) Failed() []TaskResult {
	var out []TaskResult
	for _, t := range l.Tasks {
		if t.Failed() {
			out = append(out, t)
		}
	}
	return out
}

// KillPhases counts the kills that landed, by phase. A kill storm that never
// hit a phase did not test it.
func (l *LoopResult) KillPhases() map[string]int {
	m := map[string]int{}
	for _, k := range l.Kills {
		if k.Landed {
			m[k.Phase]++
		}
	}
	return m
}

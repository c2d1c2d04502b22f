package storm

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"
)

// A fleet is one loop of a storm seen from the parent: the engine under both
// [Run] (the test binary re-executed as each child) and [RunCommands] (this
// program re-executed as the launcher of each command). The two differ only
// in how a process is built (spawn), what its exit means (exited) and how its
// own release instant comes back; the protocol is the fleet's:
//
//  1. Start. Tasks 0..n-1 are started, each in a process group of its own
//     (so that a kill of the group takes grandchildren along), with the read
//     end of the release pipe as fd 3, the write end of the ready pipe as
//     fd 4, and the caller's extraFiles from fd 5 on.
//  2. Barrier. Each process writes its task number and a newline to fd 4,
//     then blocks reading fd 3. The fleet waits until all n have said ready.
//     A process exiting first, the readyTimeout passing (both worded by
//     notReady), a malformed ready line or ctx ending the wait fails the loop
//     before anything was released.
//  3. Release. The fleet closes the write end of the release pipe: every
//     process reads EOF at once. The fleet notes the instant, on
//     CLOCK_MONOTONIC (released, comparable with the instants the processes
//     take) and on the wall clock (releasedAt, for durations). Each process
//     takes its own release instant; the caller hands them back in
//     member.released, and skew is their spread.
//  4. Supervision. From the release on, the fleet reaps each exit (calling
//     exited), carries out the chaos schedule drawn from the seed (kills,
//     stops, a replacement for each task a kill took down), and bounds the
//     loop by timeout: at expiry every process still running is marked
//     timedOut and its group killed. Cancelling ctx kills every group as
//     well, and run returns ctx.Err() once all are reaped. After a timeout
//     or a cancellation no chaos action runs and no replacement starts. If a
//     killed process is not reaped within killGrace, the loop fails.
//  5. End. Once the last process is reaped (complete), whatever the
//     processes left in their groups is killed too. On every other way out
//     of run, the groups still running are killed and their processes
//     reaped: no process outlives run.
//
// Only the goroutine calling run touches a fleet and its members, hooks
// included, except that cmd.Wait runs on a goroutine of its own per process
// and hands the member over through a channel.
type fleet[P any] struct {
	// Set by the caller before run.
	n            int           // processes released together: tasks 0..n-1
	readyTimeout time.Duration // bounds the barrier
	timeout      time.Duration // bounds supervision, from the release
	extraFiles   []*os.File    // fds 5 and up of every process
	chaos        Chaos         // with KillWindow already defaulted
	seed         uint64        // with loop, seeds the chaos schedule
	loop         int
	noun         string // what the processes are called in messages

	// spawn sets m.p, first thing, and builds the command of m (task m.task,
	// replacing m.replaces); the fleet adds the fds and the process group
	// and starts it.
	spawn func(m *member[P]) (*exec.Cmd, error)
	// notReady words the error of a failed barrier: exited is the process
	// that exited before the release, or nil at the readyTimeout; ready
	// counts the processes at the barrier.
	notReady func(exited *member[P], ready int) error
	// exited, if set, is called for each process reaped after the release.
	exited func(m *member[P])
	// phase, if set, returns the phase a process is in (Worker.Phase), for
	// Stop.Phase and Kill.Phase.
	phase func(m *member[P]) string
	// errorf, if set, reports a problem that does not end the loop.
	errorf func(format string, args ...any)

	// Results.
	members    []*member[P] // tasks 0..n-1 by number, then replacements in start order
	released   int64        // CLOCK_MONOTONIC instant of the release; 0 if it never came
	releasedAt time.Time
	kills      []Kill
	stops      []StopRecord
	wall       time.Duration // from the release to the last exit
	complete   bool          // every process was reaped after the release: the results are whole

	releaseR, releaseW *os.File
	readyR, readyW     *os.File
	exits              chan *member[P]
	quit               chan struct{}
	running            int
}

// member is one process of a fleet.
type member[P any] struct {
	p        P   // the caller's record of the process, set by spawn
	task     int // 0..n-1, or n and up for replacements
	replaces int // the killed task this one replaces, or -1
	cmd      *exec.Cmd
	pid      int       // 0 if it never started
	start    time.Time // just before it started
	startErr error     // why it never started
	waitErr  error     // from cmd.Wait
	ready    bool      // said ready at the barrier
	done     bool      // reaped, or never started
	timedOut bool      // still running at the timeout, and killed
	canceled bool      // still running when ctx ended, and killed
	kill     int       // index+1 into fleet.kills, 0 if chaos never killed it
	killed   bool      // died of that chaos kill (it had not exited before)
	released int64     // its own CLOCK_MONOTONIC release instant, as the caller learnt it; 0 if unknown
}

// killGrace is how long a killed process may take to be reaped before the
// loop gives up on it.
const killGrace = 10 * time.Second

// action is a scheduled chaos action.
type action[P any] struct {
	at   int64 // CLOCK_MONOTONIC
	kind int   // actKill, actStop, actCont
	m    *member[P]
	stop Stop
}

const (
	actKill = iota
	actStop
	actCont
)

// run carries a loop through the protocol of [fleet]. It returns ctx.Err()
// if ctx ended the loop and nil if the loop ran to its end (failed processes
// included); any other error is the harness failing. The results are whole
// only if f.complete.
func (f *fleet[P]) run(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	defer f.closePipes()
	if f.releaseR, f.releaseW, err = os.Pipe(); err != nil {
		return err
	}
	if f.readyR, f.readyW, err = os.Pipe(); err != nil {
		return err
	}
	f.quit = make(chan struct{})
	defer close(f.quit)
	readyCh := make(chan string)
	go readLines(f.readyR, readyCh, f.quit)
	f.exits = make(chan *member[P])
	defer f.reapAll()

	for task := 0; task < f.n; task++ {
		if err := f.start(task, -1); err != nil {
			return fmt.Errorf("start task %d: %w", task, err)
		}
	}
	if err := f.barrier(ctx, readyCh); err != nil {
		return err
	}
	f.released = monoNow()
	f.releasedAt = time.Now()
	f.releaseW.Close()
	f.releaseW = nil
	return f.supervise(ctx, readyCh, f.schedule())
}

func (f *fleet[P]) closePipes() {
	for _, p := range []*os.File{f.releaseR, f.releaseW, f.readyR, f.readyW} {
		if p != nil {
			p.Close()
		}
	}
}

// start starts a process. The ready pipe stays open in the parent for the
// whole loop: replacements, started after the release, join it too.
func (f *fleet[P]) start(task, replaces int) error {
	m := &member[P]{task: task, replaces: replaces}
	f.members = append(f.members, m)
	cmd, err := f.spawn(m)
	if err == nil {
		cmd.ExtraFiles = append([]*os.File{f.releaseR, f.readyW}, f.extraFiles...)
		cmd.SysProcAttr = sysProcAttr()
		m.cmd = cmd
		m.start = time.Now()
		err = cmd.Start()
	}
	if err != nil {
		m.done = true
		m.startErr = err
		return err
	}
	m.pid = cmd.Process.Pid
	f.running++
	go func() {
		m.waitErr = cmd.Wait()
		select {
		case f.exits <- m:
		case <-f.quit: // run gave up on this process
		}
	}()
	return nil
}

// killAll kills the group of every process still running.
func (f *fleet[P]) killAll() {
	for _, m := range f.members {
		if !m.done && m.pid > 0 {
			signalGroup(m.pid, sigKill)
		}
	}
}

// reapAll kills every process still running and reaps it: whatever happens,
// no process outlives the loop.
func (f *fleet[P]) reapAll() {
	f.killAll()
	for f.running > 0 {
		select {
		case m := <-f.exits:
			m.done = true
			f.running--
		case <-time.After(killGrace):
			if f.errorf != nil {
				f.errorf("%d %s did not exit after SIGKILL", f.running, f.noun)
			}
			return
		}
	}
}

// barrier waits until every process has said ready.
func (f *fleet[P]) barrier(ctx context.Context, readyCh <-chan string) error {
	timer := time.NewTimer(f.readyTimeout)
	defer timer.Stop()
	for ready := 0; ready < f.n; {
		select {
		case line := <-readyCh:
			task, err := strconv.Atoi(line)
			if err != nil || task < 0 || task >= f.n || f.members[task].ready {
				return fmt.Errorf("bad ready message %q", line)
			}
			f.members[task].ready = true
			ready++
		case m := <-f.exits:
			m.done = true
			f.running--
			return f.notReady(m, ready)
		case <-timer.C:
			return f.notReady(nil, ready)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// schedule draws the loop's chaos actions from the seed: the same seed kills
// the same tasks at the same offsets from the release.
func (f *fleet[P]) schedule() []action[P] {
	rng := mrand.New(mrand.NewPCG(f.seed, ^uint64(f.loop)))
	var acts []action[P]
	if fr := f.chaos.KillFraction; fr > 0 {
		n := int(math.Round(fr * float64(f.n)))
		n = max(1, min(n, f.n))
		win := f.chaos.KillWindow
		for _, task := range rng.Perm(f.n)[:n] {
			d := win.From
			if win.To > win.From {
				d += time.Duration(rng.Int64N(int64(win.To - win.From)))
			}
			acts = append(acts, action[P]{at: f.released + int64(d), kind: actKill, m: f.members[task]})
		}
	}
	for _, st := range f.chaos.Stops {
		acts = append(acts, action[P]{at: f.released + int64(st.At), kind: actStop, m: f.members[st.Task], stop: st})
	}
	sortActions(acts)
	return acts
}

func sortActions[P any](acts []action[P]) {
	slices.SortStableFunc(acts, func(a, b action[P]) int { return cmp.Compare(a.at, b.at) })
}

// supervise runs the loop from the release until every process is reaped.
func (f *fleet[P]) supervise(ctx context.Context, readyCh <-chan string, acts []action[P]) error {
	timeout := time.NewTimer(f.timeout)
	defer timeout.Stop()
	var grace <-chan time.Time
	var ctxErr error
	ctxDone := ctx.Done()
	stopping := false // after the timeout or a cancellation: no more chaos
	nextTask := f.n
	for f.running > 0 {
		var next <-chan time.Time
		if len(acts) > 0 && !stopping {
			next = time.After(time.Duration(acts[0].at - monoNow()))
		}
		select {
		case <-readyCh:
			// Replacements say ready too; nothing waits for them.
		case m := <-f.exits:
			f.reaped(m)
			if m.killed && f.chaos.Replace && !stopping {
				if err := f.start(nextTask, m.task); err != nil && f.errorf != nil {
					f.errorf("start replacement of task %d: %v", m.task, err)
				}
				nextTask++
			}
		case <-next:
			a := acts[0]
			acts = acts[1:]
			if more := f.act(a); more != nil {
				acts = append(acts, *more)
				sortActions(acts)
			}
		case <-timeout.C:
			stopping = true
			for _, m := range f.members {
				if !m.done {
					m.timedOut = true
					signalGroup(m.pid, sigKill)
				}
			}
			grace = time.After(killGrace)
		case <-ctxDone:
			ctxErr, ctxDone, stopping = ctx.Err(), nil, true
			for _, m := range f.members {
				if !m.done {
					m.canceled = true
					signalGroup(m.pid, sigKill)
				}
			}
			grace = time.After(killGrace)
		case <-grace:
			return fmt.Errorf("%d %s did not exit %v after SIGKILL", f.running, f.noun, killGrace)
		}
	}
	f.wall = time.Since(f.releasedAt)
	// Anything a process left behind in its process group goes too.
	for _, m := range f.members {
		if m.pid > 0 {
			signalGroup(m.pid, sigKill)
		}
	}
	f.complete = true
	return ctxErr
}

// reaped records the exit of a process after the release.
func (f *fleet[P]) reaped(m *member[P]) {
	f.running--
	m.done = true
	if m.kill > 0 {
		if sig, ok := exitSignal(m.cmd.ProcessState); ok && sig == sigKill {
			k := &f.kills[m.kill-1]
			k.Landed = true
			k.Phase = f.phaseOf(m)
			m.killed = true
		}
	}
	if f.exited != nil {
		f.exited(m)
	}
}

func (f *fleet[P]) phaseOf(m *member[P]) string {
	if f.phase == nil {
		return ""
	}
	return f.phase(m)
}

// act performs a chaos action and returns a follow-up action, if any.
func (f *fleet[P]) act(a action[P]) *action[P] {
	m := a.m
	if m.done {
		return nil
	}
	now := monoNow()
	switch a.kind {
	case actKill:
		if err := signalGroup(m.pid, sigKill); err != nil {
			return nil
		}
		f.kills = append(f.kills, Kill{Task: m.task, Pid: m.pid, At: now, After: time.Duration(now - f.released)})
		m.kill = len(f.kills)
	case actStop:
		phase := f.phaseOf(m)
		if a.stop.Phase != "" && phase != a.stop.Phase {
			a.at = now + int64(500*time.Microsecond)
			return &a
		}
		if err := signalGroup(m.pid, sigStop); err != nil {
			return nil
		}
		// The phase read above may be stale by a few microseconds; read it
		// again now that the task cannot move.
		if p := f.phaseOf(m); p != "" {
			phase = p
		}
		f.stops = append(f.stops, StopRecord{Task: m.task, Pid: m.pid, At: now, After: time.Duration(now - f.released), Phase: phase, For: a.stop.For})
		return &action[P]{at: now + int64(a.stop.For), kind: actCont, m: m}
	case actCont:
		signalGroup(m.pid, sigCont)
	}
	return nil
}

// skew is the spread of the release instants the original tasks took: how
// far from one instant the barrier let them go. Replacements start after the
// release and do not count.
func (f *fleet[P]) skew() time.Duration {
	var rels []int64
	for _, m := range f.members {
		if m.replaces < 0 && m.released != 0 {
			rels = append(rels, m.released)
		}
	}
	if len(rels) == 0 {
		return 0
	}
	return time.Duration(slices.Max(rels) - slices.Min(rels))
}

// readLines sends each line read from r to ch until r fails or quit closes.
func readLines(r io.Reader, ch chan<- string, quit <-chan struct{}) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		select {
		case ch <- sc.Text():
		case <-quit:
			return
		}
	}
}

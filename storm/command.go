package storm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Environment variables of the launcher protocol (see MaybeLaunch).
const (
	envLaunch     = "STORM_LAUNCH"      // the task number
	envLaunchArgv = "STORM_LAUNCH_ARGV" // the target command, JSON
)

// File descriptors handed to a launcher.
const (
	fdLaunchRelease = 3
	fdLaunchReady   = 4
	fdLaunchReport  = 5 // write end; the launcher writes "task instant\n"
)

// MaybeLaunch turns the process into a storm launcher when RunCommands
// started it, and returns at once otherwise. Call it first thing in main of
// any program that calls RunCommands (the program re-executes itself as the
// launcher of each command):
//
//	func main() {
//		storm.MaybeLaunch()
//		...
//	}
//
// A launcher says "ready" on a pipe, waits for the release, takes its
// CLOCK_MONOTONIC release instant, reports it, and then replaces itself with
// the target command by exec(2): the same pid, so exit codes, timeouts and
// kills apply to the real command. It never returns; if the exec fails it
// exits with status 127.
func MaybeLaunch() {
	task := os.Getenv(envLaunch)
	if task == "" {
		return
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "storm launcher: "+format+"\n", args...)
		os.Exit(127)
	}
	var argv []string
	if err := json.Unmarshal([]byte(os.Getenv(envLaunchArgv)), &argv); err != nil || len(argv) == 0 {
		fail("bad %s: %v", envLaunchArgv, err)
	}
	if !supported {
		fail("%v", errUnsupported())
	}
	release := os.NewFile(fdLaunchRelease, "storm-release")
	ready := os.NewFile(fdLaunchReady, "storm-ready")
	report := os.NewFile(fdLaunchReport, "storm-report")
	if release == nil || ready == nil || report == nil {
		fail("missing inherited pipes")
	}
	if _, err := fmt.Fprintf(ready, "%s\n", task); err != nil {
		fail("signal ready: %v", err)
	}
	ready.Close()
	io.Copy(io.Discard, release)
	t := monoNow()
	fmt.Fprintf(report, "%s %d\n", task, t)
	release.Close()
	report.Close()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envLaunch+"=") && !strings.HasPrefix(kv, envLaunchArgv+"=") {
			env = append(env, kv)
		}
	}
	err := execReplace(argv, env)
	fail("exec %q: %v", argv[0], err)
}

// Command is a command line run Count times at once in a command storm.
type Command struct {
	// Argv is the command and its arguments; "{i}" in an argument is
	// replaced by the task number. No shell is involved: use
	// []string{"sh", "-c", "..."} for pipes and redirections.
	Argv  []string
	Count int
}

// CommandConfig describes a command storm started by [RunCommands].
type CommandConfig struct {
	Commands     []Command
	Loops        int           // default 1
	Timeout      time.Duration // per loop, from the release; default 1 minute
	ReadyTimeout time.Duration // default 30 seconds
	Env          []string      // added to the environment of the commands
	Dir          string        // working directory; "" means the current one
	// Launcher is the program that calls MaybeLaunch; default the running
	// executable.
	Launcher string
	// TailBytes bounds the kept stdout and stderr of each process (default 4096).
	TailBytes int
	// Progress, if set, is called after each process exits, from a single
	// goroutine.
	Progress func(done, total int)
}

// CommandResult is what a command storm did.
type CommandResult struct {
	Loops []*CommandLoop
}

// CommandLoop is one loop of a command storm.
type CommandLoop struct {
	Loop  int
	Procs []ProcResult  // by task number
	Skew  time.Duration // max - min of the launchers' release instants
	Wall  time.Duration // from the release to the exit of the last process
}

// ProcResult is one process of a command storm.
type ProcResult struct {
	Task     int
	Command  int      // index into CommandConfig.Commands
	Argv     []string // after {i} substitution
	Pid      int
	ExitCode int // -1 if killed by a signal or never started
	Released int64
	Duration time.Duration // from the release to the exit
	Stdout   string        // tail
	Stderr   string        // tail
	TimedOut bool          // killed by the loop's timeout
	Err      string        // a start or launcher failure, or the signal that killed it
}

// Failed reports whether the process exited non-zero, timed out, or could not
// run.
func (p ProcResult) Failed() bool { return p.ExitCode != 0 || p.TimedOut || p.Err != "" }

// Failed returns the failed processes of all loops.
func (r *CommandResult) Failed() []ProcResult {
	var out []ProcResult
	for _, l := range r.Loops {
		for _, p := range l.Procs {
			if p.Failed() {
				out = append(out, p)
			}
		}
	}
	return out
}

// RunCommands runs each command Count times at once, released together by a
// barrier, Loops times over, and reports every process. A non-zero exit is
// reported in the result, not as an error; the error is for the harness
// failing (a launcher that never got ready, a cancelled ctx). On
// cancellation or timeout, every process group of the loop is killed.
//
// Arbitrary commands cannot join a barrier, so each runs under a launcher:
// the program calling RunCommands re-executes itself, and its main must call
// MaybeLaunch first thing. Not supported on Windows.
func RunCommands(ctx context.Context, cfg CommandConfig) (*CommandResult, error) {
	if !supported {
		return nil, errUnsupported()
	}
	if cfg.Loops <= 0 {
		cfg.Loops = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.TailBytes <= 0 {
		cfg.TailBytes = 4096
	}
	if cfg.Launcher == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("storm: find launcher: %w", err)
		}
		cfg.Launcher = exe
	}
	n := 0
	for i, c := range cfg.Commands {
		if len(c.Argv) == 0 || c.Count < 0 {
			return nil, fmt.Errorf("storm: command %d: empty argv or negative count", i)
		}
		n += c.Count
	}
	if n == 0 {
		return nil, fmt.Errorf("storm: no commands to run")
	}
	res := &CommandResult{}
	done := 0
	for loop := 0; loop < cfg.Loops; loop++ {
		l, err := runCommandLoop(ctx, cfg, loop, n, &done)
		if l != nil {
			res.Loops = append(res.Loops, l)
		}
		if err != nil {
			return res, fmt.Errorf("storm: loop %d: %w", loop, err)
		}
	}
	return res, nil
}

// cmdProc is the parent's record of one process of a command storm (the
// fleet member's P).
type cmdProc struct {
	res    ProcResult
	out    *tailBuffer
	errOut *tailBuffer
}

// runCommandLoop runs one loop of a command storm on a fleet of launchers.
// done counts the processes reaped over all loops, for Progress.
func runCommandLoop(ctx context.Context, cfg CommandConfig, loop, n int, done *int) (*CommandLoop, error) {
	total := n * cfg.Loops
	l := &CommandLoop{Loop: loop}
	var tasks []ProcResult
	for ci, c := range cfg.Commands {
		for k := 0; k < c.Count; k++ {
			task := len(tasks)
			argv := make([]string, len(c.Argv))
			for j, a := range c.Argv {
				argv[j] = strings.ReplaceAll(a, "{i}", strconv.Itoa(task))
			}
			tasks = append(tasks, ProcResult{Task: task, Command: ci, Argv: argv, ExitCode: -1})
		}
	}

	// The launchers report their release instants on a pipe of their own:
	// they exec(2) their command right after, so nothing of theirs is left
	// to read later.
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer reportR.Close()
	defer reportW.Close()
	quit := make(chan struct{})
	defer close(quit)
	reports := map[int]int64{}
	var reportsMu sync.Mutex
	reportsDone := make(chan struct{})
	go func() {
		defer close(reportsDone)
		lines := make(chan string)
		go func() { readLines(reportR, lines, quit); close(lines) }()
		for line := range lines {
			var task int
			var t int64
			if _, err := fmt.Sscanf(line, "%d %d", &task, &t); err == nil {
				reportsMu.Lock()
				reports[task] = t
				reportsMu.Unlock()
			}
		}
	}()

	f := &fleet[*cmdProc]{
		n:            n,
		readyTimeout: cfg.ReadyTimeout,
		timeout:      cfg.Timeout,
		extraFiles:   []*os.File{reportW},
		noun:         "processes",
	}
	f.spawn = func(m *member[*cmdProc]) (*exec.Cmd, error) {
		p := &cmdProc{res: tasks[m.task], out: &tailBuffer{max: cfg.TailBytes}, errOut: &tailBuffer{max: cfg.TailBytes}}
		m.p = p
		argvJSON, _ := json.Marshal(p.res.Argv)
		cmd := exec.Command(cfg.Launcher)
		cmd.Dir = cfg.Dir
		cmd.Env = append(os.Environ(), cfg.Env...)
		cmd.Env = append(cmd.Env, envLaunch+"="+strconv.Itoa(m.task), envLaunchArgv+"="+string(argvJSON))
		cmd.Stdout, cmd.Stderr = p.out, p.errOut
		cmd.WaitDelay = time.Second // grandchildren holding our pipes do not hang Wait
		return cmd, nil
	}
	f.notReady = func(exited *member[*cmdProc], _ int) error {
		if exited != nil {
			return fmt.Errorf("launcher of task %d exited before the release (does main call storm.MaybeLaunch first?): %s%s",
				exited.task, exited.cmd.ProcessState, tailNote(exited.p.errOut.String()))
		}
		var missing []string
		for _, m := range f.members {
			if !m.ready {
				missing = append(missing, strconv.Itoa(m.task))
			}
		}
		return fmt.Errorf("ready timeout (%v): missing tasks %s (does main call storm.MaybeLaunch first?)",
			cfg.ReadyTimeout, strings.Join(missing, ", "))
	}
	f.exited = func(m *member[*cmdProc]) {
		p := m.p
		p.res.Duration = time.Since(f.releasedAt)
		ps := m.cmd.ProcessState
		p.res.ExitCode = ps.ExitCode()
		if sig, ok := exitSignal(ps); ok && !m.timedOut {
			p.res.Err = "killed by signal " + sig.String()
		}
		*done++
		if cfg.Progress != nil {
			cfg.Progress(*done, total)
		}
	}
	runErr := f.run(ctx)
	if !f.complete {
		return l, runErr
	}
	l.Wall = f.wall
	// Every launcher is gone: once the parent's write end is closed, the
	// reader reaches EOF after the last report.
	reportW.Close()
	select {
	case <-reportsDone:
	case <-time.After(time.Second):
	}
	reportsMu.Lock()
	for _, m := range f.members {
		p := m.p
		p.res.Pid = m.pid
		p.res.TimedOut = m.timedOut
		p.res.Released = reports[p.res.Task]
		m.released = p.res.Released
		p.res.Stdout = p.out.String()
		p.res.Stderr = p.errOut.String()
		if p.res.Err == "" && runErr != nil && p.res.ExitCode != 0 {
			p.res.Err = "canceled"
		}
		l.Procs = append(l.Procs, p.res)
	}
	reportsMu.Unlock()
	l.Skew = f.skew()
	return l, runErr
}

func tailNote(s string) string {
	if s == "" {
		return ""
	}
	return "\n--- stderr tail ---\n" + s
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

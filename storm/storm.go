package storm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Config describes a storm started by [Run].
type Config struct {
	// Procs is the number of child processes released together (default 10).
	Procs int
	// Loops is how many times the whole storm is repeated (default 1).
	Loops int
	// Timeout bounds each loop from the release on (default 1 minute, and
	// never beyond the test's deadline). On expiry every task still running
	// is killed with its whole process group and reported as hung.
	Timeout time.Duration
	// ReadyTimeout bounds the wait for all children to reach the barrier
	// (default 30 seconds).
	ReadyTimeout time.Duration
	// Args gives each task its arguments (Worker.Args); nil means none.
	Args func(task int) []string
	// Env is added to the environment of the children ("KEY=value").
	Env []string
	// Setup runs in the parent only, before each loop, with the loop's shared
	// directory (Worker.Dir). Create the files the children share here:
	// code of the test before Run runs in every child too.
	Setup func(dir string, loop int) error
	// Seed seeds Worker.Rand and the chaos schedule; 0 picks one at random.
	// The seed is logged, and the STORM_SEED environment variable overrides
	// it to replay a storm.
	Seed uint64
	// Stagger delays the release of task i by i*Stagger. It exists for
	// negative controls: a staggered storm must not look concurrent.
	Stagger time.Duration
	// Chaos injects kills and stops.
	Chaos Chaos
	// KeepArtifacts keeps the artifacts directory (logs, histories, the
	// loops' shared directories) after a passing test. It is always kept
	// after a failing one, and its path logged.
	KeepArtifacts bool
	// Verbose streams the children's logs to t.Log as they run.
	Verbose bool
	// TolerateFailures stops Run from failing the test when a task fails
	// (non-zero exit, body error, panic, crash, timeout): the caller
	// inspects Result.Failed itself. Negative controls need it.
	TolerateFailures bool
}

// Run runs a storm: Procs child processes, each running body once, released
// at the same instant, Loops times over. It returns in the parent, after the
// children have exited, with what they did.
//
// The children are the test binary itself (os.Args[0]) re-executed with
// -test.run selecting only the calling test: the test function runs again in
// each child, up to its call of Run, which there runs body as one task and
// exits the process. Consequently, whatever the test does before Run, it does
// in every child; do one-time setup in Config.Setup or guarded by !IsChild().
// A test may call Run several times, but each child re-runs the test from
// the start, and calls of Run other than the one it serves return an empty
// Result (no loops) at once: code between two calls must tolerate that, so
// prefer one storm per subtest (t.Run), storing results in outer variables.
//
// Unless Config.TolerateFailures is set, any failed task fails the test with
// t.Errorf, naming the task, its exit code, its error and the tail of its log.
// Problems of the harness itself (a child that never reaches the barrier, for
// instance) are fatal. On operating systems without process storms
// (Windows), Run skips the test.
func Run(t testing.TB, cfg Config, body func(w *Worker) error) *Result {
	t.Helper()
	if IsChild() {
		if childTarget(t) {
			runChild(t, body) // never returns
		}
		return &Result{}
	}
	if !supported {
		t.Skip(errUnsupported())
	}
	s, err := newStorm(t, cfg)
	if err != nil {
		t.Fatalf("storm: %v", err)
	}
	res := &Result{Seed: s.seed, Dir: s.root}
	for loop := 0; loop < s.cfg.Loops; loop++ {
		l, err := s.runLoop(t.Context(), loop)
		if l != nil {
			res.Loops = append(res.Loops, l)
			s.logLoop(l)
		}
		if err != nil {
			t.Fatalf("storm: loop %d: %v\nseed %d, artifacts in %s", loop, err, s.seed, s.root)
		}
		if !s.cfg.TolerateFailures {
			for _, tr := range l.Failed() {
				t.Errorf("storm: loop %d: task %d failed: exit code %d: %s\n--- log tail ---\n%s\n--- (seed %d, artifacts in %s)",
					loop, tr.Task, tr.ExitCode, tr.Err, tr.Stderr, s.seed, s.root)
			}
		}
	}
	return res
}

// storm is the parent side of a storm.
type storm struct {
	t       testing.TB
	cfg     Config
	seed    uint64
	root    string
	exe     string
	runArgs []string
	runIdx  int
}

// parentRuns counts the calls of Run per running test (per *testing.T, so
// that -test.count repetitions start afresh), mirrored by childRuns in the
// children.
var parentRuns runCounter

// runCounter counts calls of Run per test.
type runCounter struct {
	sync.Mutex
	n map[testing.TB]int
}

// countRun returns how many times Run has been called in test t, this call
// included.
func countRun(t testing.TB, c *runCounter) int {
	c.Lock()
	defer c.Unlock()
	if c.n == nil {
		c.n = map[testing.TB]int{}
	}
	if c.n[t] == 0 {
		t.Cleanup(func() {
			c.Lock()
			delete(c.n, t)
			c.Unlock()
		})
	}
	c.n[t]++
	return c.n[t]
}

func newStorm(t testing.TB, cfg Config) (*storm, error) {
	t.Helper()
	if cfg.Procs <= 0 {
		cfg.Procs = 10
	}
	if cfg.Loops <= 0 {
		cfg.Loops = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if dl, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dl.Deadline(); ok {
			if left := time.Until(d) - 5*time.Second; left > 0 && left < cfg.Timeout {
				cfg.Timeout = left
			}
		}
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.Chaos.KillWindow == (Window{}) {
		cfg.Chaos.KillWindow = Window{0, 100 * time.Millisecond}
	}
	if cfg.Chaos.KillWindow.To < cfg.Chaos.KillWindow.From {
		return nil, fmt.Errorf("Chaos.KillWindow %v is empty", cfg.Chaos.KillWindow)
	}
	for _, st := range cfg.Chaos.Stops {
		if st.Task < 0 || st.Task >= cfg.Procs {
			return nil, fmt.Errorf("Chaos.Stops: no task %d", st.Task)
		}
	}
	s := &storm{t: t, cfg: cfg, seed: cfg.Seed}
	if v := os.Getenv(envSeed); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %v", envSeed, v, err)
		}
		s.seed = seed
	}
	for s.seed == 0 {
		var b [8]byte
		rand.Read(b[:])
		s.seed = binary.LittleEndian.Uint64(b[:])
	}
	t.Logf("storm: seed %d (replay with %s=%d)", s.seed, envSeed, s.seed)

	name := t.Name()
	s.runIdx = countRun(t, &parentRuns)

	s.exe = os.Args[0]
	if exe, err := os.Executable(); err == nil {
		s.exe = exe
	}
	pattern := RunPattern(name)
	if strings.HasPrefix(name, "Benchmark") {
		s.runArgs = []string{"-test.run=^$", "-test.bench=" + pattern, "-test.benchtime=1x", "-test.count=1"}
	} else {
		s.runArgs = []string{"-test.run=" + pattern, "-test.count=1"}
	}
	s.runArgs = append(s.runArgs, userFlags(os.Args[1:])...)

	root, err := os.MkdirTemp("", "storm-"+sanitize(name)+"-")
	if err != nil {
		return nil, err
	}
	s.root = root
	t.Cleanup(func() {
		if t.Failed() || cfg.KeepArtifacts {
			t.Logf("storm: artifacts kept in %s (seed %d)", root, s.seed)
			return
		}
		os.RemoveAll(root)
	})
	return s, nil
}

// userFlags returns the command-line arguments of the test binary that are
// not testing's own (-test.*), such as a -storm.long flag a test defines: the
// children need them to take the same path through the test.
func userFlags(args []string) []string {
	boolTestFlags := map[string]bool{"v": true, "short": true, "failfast": true, "benchmem": true, "paniconexit0": true, "fullpath": true}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, hasValue := strings.CutPrefix(strings.TrimLeft(a, "-"), "test.")
		if !strings.HasPrefix(a, "-") || !hasValue {
			out = append(out, a)
			continue
		}
		if !strings.Contains(name, "=") && !boolTestFlags[name] && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++ // the value of a "-test.x value" flag
		}
	}
	return out
}

// RunPattern returns the -test.run pattern that selects exactly the test or
// subtest with the given t.Name(): each slash-separated element anchored and
// quoted, as in ^TestX$/^sub_case$.
func RunPattern(name string) string {
	elems := strings.Split(name, "/")
	for i, e := range elems {
		elems[i] = "^" + regexp.QuoteMeta(e) + "$"
	}
	return strings.Join(elems, "/")
}

func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 60 {
		b = b[:60]
	}
	return string(b)
}

func (s *storm) logLoop(l *LoopResult) {
	s.t.Helper()
	failed := len(l.Failed())
	msg := fmt.Sprintf("storm: loop %d: %d tasks, skew %v, max in flight %d, %d ops (%d unknown), wall %v, %d failed",
		l.Loop, len(l.Tasks), l.Skew, l.MaxInFlight, len(l.History), l.History.Count(StatusInfo), l.Wall.Round(time.Millisecond), failed)
	if len(l.Kills) > 0 {
		phases := l.KillPhases()
		keys := make([]string, 0, len(phases))
		for k := range phases {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, phases[k]))
		}
		msg += fmt.Sprintf(", %d kills (landed by phase: %s)", len(l.Kills), strings.Join(parts, ", "))
	}
	if len(l.Stops) > 0 {
		msg += fmt.Sprintf(", %d stops", len(l.Stops))
	}
	s.t.Logf("%s", msg)
}

// proc is the parent's record of one child of a loop (the fleet member's P).
type proc struct {
	res TaskResult
	dir string
	out *lineLogger
	log *os.File
}

// runLoop runs one loop of the storm on a fleet of children. Before the
// release it fails with a nil result; after it, the result holds what the
// loop did, complete unless the error is the harness failing.
func (s *storm) runLoop(ctx context.Context, loop int) (*LoopResult, error) {
	cfg := s.cfg
	l := &LoopResult{Loop: loop, Dir: filepath.Join(s.root, fmt.Sprintf("loop-%d", loop))}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, err
	}
	if cfg.Setup != nil {
		if err := cfg.Setup(l.Dir, loop); err != nil {
			return nil, fmt.Errorf("Setup: %w", err)
		}
	}
	// The lifeline: a child that reads EOF on it before it is done knows
	// that the parent died.
	lifelineR, lifelineW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer lifelineR.Close()
	defer lifelineW.Close()

	f := &fleet[*proc]{
		n:            cfg.Procs,
		readyTimeout: cfg.ReadyTimeout,
		timeout:      cfg.Timeout,
		extraFiles:   []*os.File{lifelineR},
		chaos:        cfg.Chaos,
		seed:         s.seed,
		loop:         loop,
		noun:         "children",
		spawn:        func(m *member[*proc]) (*exec.Cmd, error) { return s.spawn(l, m) },
		exited:       s.finish,
		phase:        func(m *member[*proc]) string { return readState(m.p.dir).Phase },
		errorf: func(format string, args ...any) {
			s.t.Errorf("storm: loop %d: "+format, append([]any{loop}, args...)...)
		},
	}
	f.notReady = func(exited *member[*proc], ready int) error {
		if exited != nil {
			return fmt.Errorf("task %d exited before reaching the barrier (%v)%s",
				exited.task, exited.cmd.ProcessState, missing(f.members))
		}
		return fmt.Errorf("ready timeout (%v): %d of %d children at the barrier%s",
			cfg.ReadyTimeout, ready, len(f.members), missing(f.members))
	}
	defer func() {
		for _, m := range f.members {
			if m.p != nil && m.p.log != nil {
				m.p.log.Close()
			}
		}
	}()
	runErr := f.run(ctx)
	if f.released == 0 {
		return nil, runErr
	}
	l.Released, l.Kills, l.Stops = f.released, f.kills, f.stops
	if !f.complete {
		return l, runErr
	}
	l.Wall = f.wall
	lifelineW.Close()

	var events []event
	for _, m := range f.members {
		p := m.p
		if p.out != nil {
			p.out.flush()
		}
		p.res.Pid = m.pid
		p.res.TimedOut = m.timedOut
		if m.startErr != nil {
			p.res.Err = "start: " + m.startErr.Error()
		}
		if p.res.TimedOut {
			p.res.Err = fmt.Sprintf("hung: killed by the storm timeout (%v) in phase %q", cfg.Timeout, p.res.Phase)
		}
		p.res.Stderr = tail(filepath.Join(p.dir, "log"), 2048)
		ev, bad, err := readHistory(filepath.Join(p.dir, "history.jsonl"))
		if err != nil {
			return l, err
		}
		if bad > 0 {
			s.t.Logf("storm: loop %d task %d: %d unreadable history lines", loop, p.res.Task, bad)
		}
		events = append(events, ev...)
		l.Tasks = append(l.Tasks, p.res)
	}
	l.Skew = f.skew()
	if l.History, err = mergeHistory(events); err != nil {
		return l, err
	}
	l.MaxInFlight = l.History.MaxInFlight()
	return l, runErr
}

// spawn builds the command of child m: the test binary re-executed to serve
// this call of Run as task m.task, logging to the task's directory.
func (s *storm) spawn(l *LoopResult, m *member[*proc]) (*exec.Cmd, error) {
	cfg := s.cfg
	p := &proc{res: TaskResult{Task: m.task, ReplacementOf: m.replaces, ExitCode: -1}}
	p.dir = filepath.Join(l.Dir, "tasks", strconv.Itoa(m.task))
	m.p = p
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	argTask := m.task
	if m.replaces >= 0 {
		argTask = m.replaces
	}
	var args []string
	if cfg.Args != nil {
		args = cfg.Args(argTask)
	}
	argsJSON, _ := json.Marshal(args)
	if args == nil {
		argsJSON = []byte("[]")
	}
	cmd := exec.Command(s.exe, s.runArgs...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Env = append(cmd.Env, goraceEnv(cmd.Env),
		envChild+"="+s.t.Name(),
		envChildRun+"="+strconv.Itoa(s.runIdx),
		envTask+"="+strconv.Itoa(m.task),
		envProcs+"="+strconv.Itoa(cfg.Procs),
		envLoop+"="+strconv.Itoa(l.Loop),
		envDir+"="+l.Dir,
		envTaskDir+"="+p.dir,
		envChildSeed+"="+strconv.FormatUint(s.seed, 10),
		envReplaces+"="+strconv.Itoa(m.replaces),
		envArgs+"="+string(argsJSON),
		envStagger+"="+cfg.Stagger.String(),
	)
	log, err := os.Create(filepath.Join(p.dir, "log"))
	if err != nil {
		return nil, err
	}
	p.log = log
	if cfg.Verbose {
		p.out = &lineLogger{t: s.t, prefix: fmt.Sprintf("[loop %d task %d] ", l.Loop, m.task)}
		w := io.MultiWriter(log, p.out)
		cmd.Stdout, cmd.Stderr = w, w
		cmd.WaitDelay = time.Second
	} else {
		cmd.Stdout, cmd.Stderr = log, log
	}
	return cmd, nil
}

// goraceEnv returns the GORACE setting for children: a race-enabled binary
// sleeps atexit_sleep_ms (default 1s) before exiting, which would make every
// task of a -race storm last a second more, so it is set to 0 unless the user
// chose a value.
func goraceEnv(env []string) string {
	cur := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			cur = v
		}
	}
	if strings.Contains(cur, "atexit_sleep_ms") {
		return "GORACE=" + cur
	}
	return "GORACE=" + strings.TrimSpace(cur+" atexit_sleep_ms=0")
}

// missing describes the children not at the barrier, with their log tails.
func missing(members []*member[*proc]) string {
	var b strings.Builder
	var tasks []string
	for _, m := range members {
		if !m.ready {
			tasks = append(tasks, strconv.Itoa(m.task))
		}
	}
	fmt.Fprintf(&b, "; missing tasks: %s", strings.Join(tasks, ", "))
	shown := 0
	for _, m := range members {
		if !m.ready && shown < 3 {
			shown++
			fmt.Fprintf(&b, "\n--- task %d log tail ---\n%s", m.task, tail(filepath.Join(m.p.dir, "log"), 1024))
		}
	}
	if shown > 0 {
		b.WriteString("\n(did the test fail or skip before calling storm.Run in the child? flags and environment are passed on, other state is not)")
	}
	return b.String()
}

// finish records the exit of a child reaped after the release.
func (s *storm) finish(m *member[*proc]) {
	p := m.p
	p.res.Duration = time.Since(m.start)
	st := readState(p.dir)
	p.res.Phase = st.Phase
	p.res.Released = st.Release
	m.released = st.Release
	var rep childReport
	haveReport := false
	if data, err := os.ReadFile(filepath.Join(p.dir, "result.json")); err == nil && json.Unmarshal(data, &rep) == nil {
		haveReport = true
		p.res.Result = rep.Result
	}
	ps := m.cmd.ProcessState
	if ps == nil {
		p.res.Err = fmt.Sprintf("wait: %v", m.waitErr)
		return
	}
	p.res.ExitCode = ps.ExitCode()
	if sig, ok := exitSignal(ps); ok {
		switch {
		case m.killed:
			p.res.Killed = true
		case m.timedOut:
			// described once the loop is over
		case m.canceled:
			p.res.Err = fmt.Sprintf("canceled: killed in phase %q", st.Phase)
		default:
			p.res.Err = fmt.Sprintf("killed by signal %v in phase %q", sig, st.Phase)
		}
		return
	}
	switch {
	case haveReport && rep.Panic != "":
		p.res.Err = firstLine(rep.Panic)
	case haveReport && rep.Err != "":
		p.res.Err = rep.Err
	case p.res.ExitCode == exitOrphaned && !haveReport:
		p.res.Err = "the child lost its parent"
	case p.res.ExitCode != 0:
		p.res.Err = fmt.Sprintf("exit status %d without a report (crash, os.Exit or log.Fatal in the body?)", p.res.ExitCode)
	case !haveReport:
		p.res.Err = "exited 0 without a report (os.Exit in the body?)"
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// readState reads a task's state record; the zero value if there is none yet.
func readState(dir string) childState {
	var st childState
	data, err := os.ReadFile(filepath.Join(dir, "state"))
	if err != nil {
		return st
	}
	json.Unmarshal(bytes.TrimSpace(data), &st)
	return st
}

// tail returns the last n bytes of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return string(buf)
}

// lineLogger passes a child's output to t.Log line by line.
type lineLogger struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *lineLogger) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.t.Logf("%s%s", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

func (w *lineLogger) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.t.Logf("%s%s", w.prefix, w.buf)
		w.buf = nil
	}
}

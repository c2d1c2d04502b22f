package storm

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
		l, err := s.runLoop(loop)
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

// proc is one child of a loop, seen from the parent.
type proc struct {
	res     TaskResult
	dir     string
	cmd     *exec.Cmd
	start   time.Time
	done    bool
	ready   bool
	kill    int // index+1 into LoopResult.Kills, 0 if not killed by chaos
	stopped bool
	out     *lineLogger
	log     *os.File
}

type exitMsg struct {
	p   *proc
	err error
}

// action is a scheduled chaos action.
type action struct {
	at   int64 // CLOCK_MONOTONIC
	kind int   // actKill, actStop, actCont
	p    *proc
	stop Stop
	rec  int // index+1 into Stops for actCont
}

const (
	actKill = iota
	actStop
	actCont
)

// pipes are the barrier and the lifeline of one loop.
type pipes struct {
	releaseR, releaseW   *os.File
	readyR, readyW       *os.File
	lifelineR, lifelineW *os.File
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	if p.releaseR, p.releaseW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.readyR, p.readyW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	if p.lifelineR, p.lifelineW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	return &p, nil
}

func (p *pipes) close() {
	for _, f := range []*os.File{p.releaseR, p.releaseW, p.readyR, p.readyW, p.lifelineR, p.lifelineW} {
		if f != nil {
			f.Close()
		}
	}
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

func (s *storm) runLoop(loop int) (*LoopResult, error) {
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
	pp, err := newPipes()
	if err != nil {
		return nil, err
	}
	defer pp.close()
	quit := make(chan struct{})
	defer close(quit)
	readyCh := make(chan string)
	go readLines(pp.readyR, readyCh, quit)
	exitCh := make(chan exitMsg)

	var procs []*proc
	running := 0
	start := func(task, replaces int) (*proc, error) {
		p := &proc{res: TaskResult{Task: task, ReplacementOf: replaces, ExitCode: -1}}
		p.dir = filepath.Join(s.root, fmt.Sprintf("loop-%d", loop), "tasks", strconv.Itoa(task))
		procs = append(procs, p)
		if err := os.MkdirAll(p.dir, 0o755); err != nil {
			return p, err
		}
		argTask := task
		if replaces >= 0 {
			argTask = replaces
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
			envTask+"="+strconv.Itoa(task),
			envProcs+"="+strconv.Itoa(cfg.Procs),
			envLoop+"="+strconv.Itoa(loop),
			envDir+"="+l.Dir,
			envTaskDir+"="+p.dir,
			envChildSeed+"="+strconv.FormatUint(s.seed, 10),
			envReplaces+"="+strconv.Itoa(replaces),
			envArgs+"="+string(argsJSON),
			envStagger+"="+cfg.Stagger.String(),
		)
		cmd.ExtraFiles = []*os.File{pp.releaseR, pp.readyW, pp.lifelineR}
		cmd.SysProcAttr = sysProcAttr()
		log, err := os.Create(filepath.Join(p.dir, "log"))
		if err != nil {
			return p, err
		}
		p.log = log
		if cfg.Verbose {
			p.out = &lineLogger{t: s.t, prefix: fmt.Sprintf("[loop %d task %d] ", loop, task)}
			w := io.MultiWriter(log, p.out)
			cmd.Stdout, cmd.Stderr = w, w
			cmd.WaitDelay = time.Second
		} else {
			cmd.Stdout, cmd.Stderr = log, log
		}
		p.cmd = cmd
		p.start = time.Now()
		if err := cmd.Start(); err != nil {
			p.done = true
			p.res.Err = "start: " + err.Error()
			return p, err
		}
		p.res.Pid = cmd.Process.Pid
		running++
		go func() { exitCh <- exitMsg{p, cmd.Wait()} }()
		return p, nil
	}
	killAll := func() {
		for _, p := range procs {
			if !p.done && p.cmd != nil && p.cmd.Process != nil {
				signalGroup(p.res.Pid, sigKill)
			}
		}
	}
	// Whatever happens, no child outlives the loop.
	defer func() {
		killAll()
		for running > 0 {
			select {
			case m := <-exitCh:
				m.p.done = true
				running--
			case <-time.After(10 * time.Second):
				s.t.Errorf("storm: %d children did not exit after SIGKILL", running)
				return
			}
		}
	}()

	var startErr error
	for task := 0; task < cfg.Procs; task++ {
		if _, err := start(task, -1); err != nil {
			startErr = fmt.Errorf("start task %d: %w", task, err)
			break
		}
	}

	// The barrier: wait until every child has said "ready".
	if startErr == nil {
		startErr = s.awaitReady(procs, readyCh, exitCh, &running)
	}
	if startErr != nil {
		killAll()
		return nil, startErr
	}
	l.Released = monoNow()
	releasedAt := time.Now()
	pp.releaseW.Close()
	pp.releaseW = nil

	// Chaos schedule, from the seed.
	rng := mrand.New(mrand.NewPCG(s.seed, ^uint64(loop)))
	var acts []action
	if f := cfg.Chaos.KillFraction; f > 0 {
		n := int(math.Round(f * float64(cfg.Procs)))
		n = max(1, min(n, cfg.Procs))
		win := cfg.Chaos.KillWindow
		for _, task := range rng.Perm(cfg.Procs)[:n] {
			d := win.From
			if win.To > win.From {
				d += time.Duration(rng.Int64N(int64(win.To - win.From)))
			}
			acts = append(acts, action{at: l.Released + int64(d), kind: actKill, p: procs[task]})
		}
	}
	for _, st := range cfg.Chaos.Stops {
		acts = append(acts, action{at: l.Released + int64(st.At), kind: actStop, p: procs[st.Task], stop: st})
	}
	sortActs := func() { slices.SortStableFunc(acts, func(a, b action) int { return cmpInt64(a.at, b.at) }) }
	sortActs()

	timeout := time.NewTimer(cfg.Timeout)
	defer timeout.Stop()
	timedOut := false
	var grace <-chan time.Time
	nextReplacement := cfg.Procs
	for running > 0 {
		var next <-chan time.Time
		if len(acts) > 0 && !timedOut {
			next = time.After(time.Duration(acts[0].at - monoNow()))
		}
		select {
		case line := <-readyCh:
			_ = line // replacements say ready too; nothing waits for them
		case m := <-exitCh:
			running--
			s.finish(l, m.p, m.err)
			if k := m.p.kill; k > 0 && l.Kills[k-1].Landed && cfg.Chaos.Replace && !timedOut {
				if _, err := start(nextReplacement, m.p.res.Task); err != nil {
					s.t.Errorf("storm: loop %d: start replacement of task %d: %v", loop, m.p.res.Task, err)
				}
				nextReplacement++
			}
		case <-next:
			a := acts[0]
			acts = acts[1:]
			if more := s.act(l, a); more != nil {
				acts = append(acts, *more)
				sortActs()
			}
		case <-timeout.C:
			timedOut = true
			for _, p := range procs {
				if !p.done {
					p.res.TimedOut = true
					signalGroup(p.res.Pid, sigKill)
				}
			}
			grace = time.After(10 * time.Second)
		case <-grace:
			return l, fmt.Errorf("%d children did not exit 10s after SIGKILL", running)
		}
	}
	l.Wall = time.Since(releasedAt)
	// Anything a child left behind in its process group goes too.
	for _, p := range procs {
		if p.res.Pid > 0 {
			signalGroup(p.res.Pid, sigKill)
		}
	}
	pp.lifelineW.Close()
	pp.lifelineW = nil

	var events []event
	var rels []int64
	for _, p := range procs {
		if p.log != nil {
			p.log.Close()
		}
		if p.out != nil {
			p.out.flush()
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
		if p.res.ReplacementOf < 0 && p.res.Released != 0 {
			rels = append(rels, p.res.Released)
		}
		l.Tasks = append(l.Tasks, p.res)
	}
	if len(rels) > 0 {
		l.Skew = time.Duration(slices.Max(rels) - slices.Min(rels))
	}
	if l.History, err = mergeHistory(events); err != nil {
		return l, err
	}
	l.MaxInFlight = l.History.MaxInFlight()
	return l, nil
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

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// awaitReady waits until every started child has written "ready".
func (s *storm) awaitReady(procs []*proc, readyCh <-chan string, exitCh <-chan exitMsg, running *int) error {
	timer := time.NewTimer(s.cfg.ReadyTimeout)
	defer timer.Stop()
	n := 0
	for n < len(procs) {
		select {
		case line := <-readyCh:
			task, err := strconv.Atoi(line)
			if err != nil || task < 0 || task >= len(procs) || procs[task].ready {
				return fmt.Errorf("bad ready message %q", line)
			}
			procs[task].ready = true
			n++
		case m := <-exitCh:
			*running--
			m.p.done = true
			return fmt.Errorf("task %d exited before reaching the barrier (%v)%s",
				m.p.res.Task, m.p.cmd.ProcessState, s.missing(procs))
		case <-timer.C:
			return fmt.Errorf("ready timeout (%v): %d of %d children at the barrier%s",
				s.cfg.ReadyTimeout, n, len(procs), s.missing(procs))
		}
	}
	return nil
}

// missing describes the children not at the barrier, with their log tails.
func (s *storm) missing(procs []*proc) string {
	var b strings.Builder
	var tasks []string
	for _, p := range procs {
		if !p.ready {
			tasks = append(tasks, strconv.Itoa(p.res.Task))
		}
	}
	fmt.Fprintf(&b, "; missing tasks: %s", strings.Join(tasks, ", "))
	shown := 0
	for _, p := range procs {
		if !p.ready && shown < 3 {
			shown++
			fmt.Fprintf(&b, "\n--- task %d log tail ---\n%s", p.res.Task, tail(filepath.Join(p.dir, "log"), 1024))
		}
	}
	if shown > 0 {
		b.WriteString("\n(did the test fail or skip before calling storm.Run in the child? flags and environment are passed on, other state is not)")
	}
	return b.String()
}

// act performs a chaos action and returns a follow-up action, if any.
func (s *storm) act(l *LoopResult, a action) *action {
	p := a.p
	if p.done {
		return nil
	}
	now := monoNow()
	switch a.kind {
	case actKill:
		if err := signalGroup(p.res.Pid, sigKill); err != nil {
			return nil
		}
		l.Kills = append(l.Kills, Kill{Task: p.res.Task, Pid: p.res.Pid, At: now, After: time.Duration(now - l.Released)})
		p.kill = len(l.Kills)
	case actStop:
		st := readState(p.dir)
		if a.stop.Phase != "" && st.Phase != a.stop.Phase {
			a.at = now + int64(500*time.Microsecond)
			return &a
		}
		if err := signalGroup(p.res.Pid, sigStop); err != nil {
			return nil
		}
		// The phase read above may be stale by a few microseconds; read it
		// again now that the task cannot move.
		if st2 := readState(p.dir); st2.Phase != "" {
			st = st2
		}
		l.Stops = append(l.Stops, StopRecord{Task: p.res.Task, Pid: p.res.Pid, At: now, After: time.Duration(now - l.Released), Phase: st.Phase, For: a.stop.For})
		p.stopped = true
		return &action{at: now + int64(a.stop.For), kind: actCont, p: p}
	case actCont:
		signalGroup(p.res.Pid, sigCont)
		p.stopped = false
	}
	return nil
}

// finish records the exit of a child.
func (s *storm) finish(l *LoopResult, p *proc, waitErr error) {
	p.done = true
	p.res.Duration = time.Since(p.start)
	st := readState(p.dir)
	p.res.Phase = st.Phase
	p.res.Released = st.Release
	var rep childReport
	haveReport := false
	if data, err := os.ReadFile(filepath.Join(p.dir, "result.json")); err == nil && json.Unmarshal(data, &rep) == nil {
		haveReport = true
		p.res.Result = rep.Result
	}
	ps := p.cmd.ProcessState
	if ps == nil {
		p.res.Err = fmt.Sprintf("wait: %v", waitErr)
		return
	}
	p.res.ExitCode = ps.ExitCode()
	if sig, ok := exitSignal(ps); ok {
		if p.kill > 0 && sig == sigKill {
			k := &l.Kills[p.kill-1]
			k.Landed = true
			k.Phase = st.Phase
			p.res.Killed = true
			return
		}
		if p.res.TimedOut {
			return // described later
		}
		p.res.Err = fmt.Sprintf("killed by signal %v in phase %q", sig, st.Phase)
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

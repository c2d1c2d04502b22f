package storm

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Environment variables of the protocol between a storm's parent and its
// children. STORM_SEED is the only one meant for people: set it on the go test
// command line to replay a storm with the seed a failed run printed.
const (
	envSeed      = "STORM_SEED"
	envChild     = "STORM_CHILD"     // the test name (t.Name()) the child serves
	envChildRun  = "STORM_CHILD_RUN" // which call of Run in that test (1-based)
	envTask      = "STORM_TASK"
	envProcs     = "STORM_PROCS"
	envLoop      = "STORM_LOOP"
	envDir       = "STORM_DIR"
	envTaskDir   = "STORM_TASK_DIR"
	envChildSeed = "STORM_CHILD_SEED"
	envReplaces  = "STORM_REPLACES"
	envArgs      = "STORM_ARGS"
	envStagger   = "STORM_STAGGER"
)

// File descriptors handed to each child (exec.Cmd.ExtraFiles start at 3).
const (
	fdRelease  = 3 // read end; EOF means "go"
	fdReady    = 4 // write end; the child writes "task\n" once it waits
	fdLifeline = 5 // read end; EOF before the child is done means the parent died
)

// Exit codes of a child.
const (
	exitBodyError = 1 // the body returned an error or marked the test failed
	exitPanic     = 2 // the body panicked (the same code as an unrecovered Go panic)
	exitOrphaned  = 3 // the parent died; the child gave up
)

// stateSize is the fixed size of a task's state record (see Worker.Phase).
const stateSize = 256

// A Worker is a storm task's view of the storm, inside the child process.
// Its methods may be called from several goroutines.
type Worker struct {
	Task          int        // task number: 0..Procs-1, or Procs and up for replacements
	Procs         int        // number of tasks released together
	Loop          int        // loop number, 0-based
	Dir           string     // the loop's shared directory; Config.Setup prepared it
	Args          []string   // Config.Args(task); a replacement gets the args of the task it replaces
	Seed          uint64     // the storm's seed
	Rand          *rand.Rand // seeded from (Seed, Loop, Task): the same seed replays the same streams
	ReplacementOf int        // the killed task this one replaces, or -1

	taskDir string
	hist    *os.File // O_APPEND; one write(2) per event
	state   *os.File // fixed-size record rewritten in place

	mu      sync.Mutex
	seq     int64
	phase   string
	release int64
	result  json.RawMessage
}

// childState is the record in a task's state file. It survives a SIGKILL of
// the child (it lives in the page cache), so the parent reads in which phase a
// killed child was.
type childState struct {
	Phase   string `json:"phase"`
	Since   int64  `json:"since"`
	Release int64  `json:"release,omitempty"`
}

// childReport is written by the child when its body has returned.
type childReport struct {
	Err     string          `json:"err,omitempty"`
	Panic   string          `json:"panic,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Release int64           `json:"release"`
	End     int64           `json:"end"`
}

// Logf writes a line to the task's log (the child's stderr, kept in the
// artifacts directory and shown by the parent on failure or with Verbose).
func (w *Worker) Logf(format string, args ...any) {
	w.mu.Lock()
	rel := w.release
	w.mu.Unlock()
	var since time.Duration
	if rel != 0 {
		since = time.Duration(monoNow() - rel)
	}
	fmt.Fprintf(os.Stderr, "task %d +%v: %s\n", w.Task, since.Round(time.Microsecond), fmt.Sprintf(format, args...))
}

// SetResult records v (encoded as JSON) as the task's result; the parent
// finds it in TaskResult.Result. The last call wins. A killed task has no
// result: use the history for what must survive a kill.
func (w *Worker) SetResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("storm: SetResult: %w", err)
	}
	w.mu.Lock()
	w.result = b
	w.mu.Unlock()
	return nil
}

// Phase marks that the task enters the named phase, such as "wait-lock",
// "in-tx" or "after-commit". The phase is stored with one pwrite(2) in a
// small file in the page cache, so when the parent kills the task it reads the
// phase the task was in at that instant; chaos kills record it and Stop can
// wait for it.
func (w *Worker) Phase(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.phase = name
	w.writeStateLocked()
}

func (w *Worker) writeStateLocked() {
	name := w.phase
	if len(name) > 128 {
		name = name[:128]
	}
	b, _ := json.Marshal(childState{Phase: name, Since: monoNow(), Release: w.release})
	rec := make([]byte, stateSize)
	for i := range rec {
		rec[i] = ' '
	}
	copy(rec, b)
	rec[stateSize-1] = '\n'
	if _, err := w.state.WriteAt(rec, 0); err != nil {
		fmt.Fprintf(os.Stderr, "storm: task %d: write phase: %v\n", w.Task, err)
	}
}

// Invoke records in the task's history that an operation on key with the
// given input (encoded as JSON) starts now, and returns its id. Complete it
// with Ok or Fail. An operation never completed, because the task was killed
// or the caller left it open on an ambiguous error, has an unknown outcome
// (StatusInfo) in the merged history.
//
// Each event is appended with a single unbuffered write(2) to an O_APPEND
// file: it is in the page cache before Invoke returns, so it survives a
// SIGKILL of the process (no fsync: the machine is not expected to crash).
func (w *Worker) Invoke(key string, input any) OpID {
	w.mu.Lock()
	w.seq++
	id := OpID(int64(w.Task)<<32 | w.seq)
	w.mu.Unlock()
	w.record(event{ID: id, Type: "invoke", Key: key, Value: mustJSON(input)})
	return id
}

// Ok records that operation id completed and took effect, with the given
// output (encoded as JSON; nil for none).
func (w *Worker) Ok(id OpID, output any) {
	w.record(event{ID: id, Type: "ok", Value: mustJSON(output)})
}

// Fail records that operation id completed without taking effect. Use it only
// when the operation definitely did not happen (for an ambiguous error, leave
// the operation open: it becomes StatusInfo).
func (w *Worker) Fail(id OpID, err error) {
	msg := "failed"
	if err != nil {
		msg = err.Error()
	}
	w.record(event{ID: id, Type: "fail", Err: msg})
}

func (w *Worker) record(e event) {
	e.T = monoNow()
	b, err := json.Marshal(e)
	if err != nil {
		panic("storm: history: " + err.Error())
	}
	b = append(b, '\n')
	if _, err := w.hist.Write(b); err != nil {
		panic("storm: history: " + err.Error())
	}
}

func mustJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("storm: cannot encode %T as JSON: %v", v, err))
	}
	return b
}

// childRuns counts the calls of Run per test in a child process, so that the
// child serves exactly the call that started it. With parentRuns, it is the
// only global state of the package.
var childRuns runCounter

// IsChild reports whether this process is a storm child. Everything a test
// does before calling Run also runs in every child; guard one-time setup with
// !IsChild() or, better, do it in Config.Setup.
func IsChild() bool { return os.Getenv(envChild) != "" }

// childTarget reports whether this call of Run (in test t) is the one this
// child process was started to serve.
func childTarget(t testing.TB) bool {
	if os.Getenv(envChild) != t.Name() {
		return false
	}
	return strconv.Itoa(countRun(t, &childRuns)) == os.Getenv(envChildRun)
}

// runChild is Run inside a child: join the barrier, run the body once, report,
// and exit the process. It never returns.
func runChild(t testing.TB, body func(*Worker) error) {
	var bodyErr error
	die := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "storm child: "+format+"\n", args...)
		os.Exit(exitBodyError)
	}
	atoi := func(key string) int {
		n, err := strconv.Atoi(os.Getenv(key))
		if err != nil {
			die("bad %s=%q", key, os.Getenv(key))
		}
		return n
	}
	w := &Worker{
		Task:          atoi(envTask),
		Procs:         atoi(envProcs),
		Loop:          atoi(envLoop),
		Dir:           os.Getenv(envDir),
		ReplacementOf: atoi(envReplaces),
		taskDir:       os.Getenv(envTaskDir),
	}
	seed, err := strconv.ParseUint(os.Getenv(envChildSeed), 10, 64)
	if err != nil {
		die("bad %s: %v", envChildSeed, err)
	}
	w.Seed = seed
	w.Rand = taskRand(seed, w.Loop, w.Task)
	if err := json.Unmarshal([]byte(os.Getenv(envArgs)), &w.Args); err != nil {
		die("bad %s: %v", envArgs, err)
	}
	stagger, _ := time.ParseDuration(os.Getenv(envStagger))
	if w.hist, err = os.OpenFile(filepath.Join(w.taskDir, "history.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		die("%v", err)
	}
	if w.state, err = os.OpenFile(filepath.Join(w.taskDir, "state"), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		die("%v", err)
	}
	release := os.NewFile(fdRelease, "storm-release")
	ready := os.NewFile(fdReady, "storm-ready")
	lifeline := os.NewFile(fdLifeline, "storm-lifeline")
	if release == nil || ready == nil || lifeline == nil {
		die("missing inherited pipes")
	}
	go func() {
		var b [1]byte
		lifeline.Read(b[:]) // returns only when the parent is gone
		fmt.Fprintf(os.Stderr, "storm: task %d: parent died, exiting\n", w.Task)
		os.Exit(exitOrphaned)
	}()

	w.Phase("ready")
	if _, err := fmt.Fprintf(ready, "%d\n", w.Task); err != nil {
		die("signal ready: %v", err)
	}
	ready.Close()
	io.Copy(io.Discard, release) // blocks until the parent closes the write end
	release.Close()
	if w.ReplacementOf < 0 && stagger > 0 {
		time.Sleep(time.Duration(w.Task) * stagger)
	}
	w.mu.Lock()
	w.release = monoNow()
	w.phase = "run"
	w.writeStateLocked()
	w.mu.Unlock()

	returned := false
	failedBefore := t.Failed()
	defer func() {
		// Runs on return, panic and runtime.Goexit alike; os.Exit keeps the
		// testing framework from printing anything for this child.
		rep := childReport{Release: w.release}
		code := 0
		if r := recover(); r != nil {
			rep.Panic = fmt.Sprintf("panic: %v\n\n%s", r, debug.Stack())
			fmt.Fprintf(os.Stderr, "storm: task %d: %s\n", w.Task, rep.Panic)
			code = exitPanic
		} else if !returned {
			rep.Err = "the body called runtime.Goexit (t.FailNow, t.Fatal or t.SkipNow in a child?)"
			code = exitBodyError
		} else if bodyErr != nil {
			rep.Err = bodyErr.Error()
			code = exitBodyError
			fmt.Fprintf(os.Stderr, "storm: task %d: error: %v\n", w.Task, bodyErr)
		} else if t.Failed() && !failedBefore {
			rep.Err = "the test was marked failed in the child (t.Error called in the body?)"
			code = exitBodyError
		}
		w.mu.Lock()
		rep.Result = w.result
		w.mu.Unlock()
		rep.End = monoNow()
		data, _ := json.Marshal(rep)
		if err := os.WriteFile(filepath.Join(w.taskDir, "result.json"), data, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "storm: task %d: write result: %v\n", w.Task, err)
			code = exitBodyError
		}
		os.Exit(code)
	}()
	bodyErr = body(w)
	returned = true
}

// taskRand returns the random stream of a task.
func taskRand(seed uint64, loop, task int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(loop)<<32|uint64(uint32(task))))
}

package storm_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase/storm"
)

var long = flag.Bool("storm.long", false, "run the long storm soaks")

func TestMain(m *testing.M) {
	storm.MaybeLaunch() // the RunCommands tests use this binary as the launcher
	flag.Parse()
	os.Exit(m.Run())
}

func skipUnsupported(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("process storms need linux or darwin")
	}
}

// sleepOp is the harness self-test workload: one short operation.
func sleepOp(d time.Duration) func(w *storm.Worker) error {
	return func(w *storm.Worker) error {
		id := w.Invoke("sleep", nil)
		time.Sleep(d)
		w.Ok(id, nil)
		return nil
	}
}

// TestOverlap is the harness self-test: released together, 50 processes doing
// a 20 ms operation overlap.
func TestOverlap(t *testing.T) {
	const procs = 50
	res := storm.Run(t, storm.Config{Procs: procs}, sleepOp(20*time.Millisecond))
	for _, l := range res.Loops {
		if len(l.History) != procs || l.History.Count(storm.StatusOK) != procs {
			t.Errorf("loop %d: %d ops, want %d ok", l.Loop, len(l.History), procs)
		}
		if l.MaxInFlight < procs/2 {
			t.Errorf("loop %d: max in flight %d < %d: the storm did not overlap", l.Loop, l.MaxInFlight, procs/2)
		}
		t.Logf("loop %d: skew %v, max in flight %d/%d", l.Loop, l.Skew, l.MaxInFlight, procs)
	}
}

// TestOverlapNegativeControl staggers the release so that the operations do
// not overlap: the overlap assertion of TestOverlap must fail on it, or the
// metric proves nothing.
func TestOverlapNegativeControl(t *testing.T) {
	const procs = 20
	res := storm.Run(t, storm.Config{Procs: procs, Stagger: 25 * time.Millisecond}, sleepOp(5*time.Millisecond))
	l := res.Loops[0]
	if l.MaxInFlight >= procs/2 {
		t.Fatalf("staggered storm reported max in flight %d >= %d: the overlap metric does not detect staggering", l.MaxInFlight, procs/2)
	}
	// (On a quiet machine it is 1 or 2; a loaded one stretches the 5 ms
	// operations, so only the half-the-processes bound above is asserted.)
	if l.Skew < time.Duration(procs-2)*25*time.Millisecond { // the wake-ups themselves are spread a little
		t.Errorf("staggered storm: skew %v, want >= %v", l.Skew, time.Duration(procs-2)*25*time.Millisecond)
	}
	t.Logf("negative control: max in flight %d, skew %v", l.MaxInFlight, l.Skew)
}

func TestFailuresReported(t *testing.T) {
	res := storm.Run(t, storm.Config{Procs: 6, TolerateFailures: true}, func(w *storm.Worker) error {
		switch w.Task {
		case 1:
			return errors.New("body error from task 1")
		case 2:
			panic("panic from task 2")
		case 3:
			fmt.Fprintln(os.Stderr, "task 3 exits with 7")
			os.Exit(7)
		case 4:
			runtime.Goexit()
		case 5:
			w.SetResult(map[string]int{"task": 5})
		}
		return nil
	})
	l := res.Loops[0]
	byTask := map[int]storm.TaskResult{}
	for _, tr := range res.Failed() {
		byTask[tr.Task] = tr
	}
	if len(byTask) != 4 {
		t.Fatalf("failed tasks: %+v, want 1..4", res.Failed())
	}
	want := map[int]struct {
		code int
		err  string
	}{
		1: {1, "body error from task 1"},
		2: {2, "panic: panic from task 2"},
		3: {7, "exit status 7"},
		4: {1, "Goexit"},
	}
	for task, w := range want {
		tr, ok := byTask[task]
		if !ok {
			t.Errorf("task %d not reported as failed", task)
			continue
		}
		if tr.ExitCode != w.code || !strings.Contains(tr.Err, w.err) {
			t.Errorf("task %d: exit %d, err %q; want exit %d, err containing %q", task, tr.ExitCode, tr.Err, w.code, w.err)
		}
	}
	if !strings.Contains(byTask[3].Stderr, "task 3 exits with 7") {
		t.Errorf("task 3 stderr tail %q lacks its output", byTask[3].Stderr)
	}
	if !strings.Contains(byTask[2].Stderr, "goroutine") {
		t.Errorf("task 2 stderr tail lacks the panic's stack: %q", byTask[2].Stderr)
	}
	if got := string(l.Tasks[5].Result); got != `{"task":5}` {
		t.Errorf("task 5 result %s", got)
	}
	if l.Tasks[0].Failed() || l.Tasks[0].ExitCode != 0 {
		t.Errorf("task 0: %+v", l.Tasks[0])
	}
}

// TestSeedReplays runs the same seeded storm twice and gets the same random
// streams.
func TestSeedReplays(t *testing.T) {
	if os.Getenv("STORM_SEED") != "" {
		t.Skip("STORM_SEED overrides Config.Seed")
	}
	body := func(w *storm.Worker) error {
		return w.SetResult([]uint64{w.Rand.Uint64(), w.Rand.Uint64()})
	}
	cfg := storm.Config{Procs: 3, Loops: 2, Seed: 42}
	var a, b, c *storm.Result
	t.Run("a", func(t *testing.T) { a = storm.Run(t, cfg, body) })
	t.Run("b", func(t *testing.T) { b = storm.Run(t, cfg, body) })
	cfg.Seed, cfg.Loops, cfg.Procs = 43, 1, 1
	t.Run("c", func(t *testing.T) { c = storm.Run(t, cfg, body) })
	if a.Seed != 42 || b.Seed != 42 {
		t.Fatalf("seeds %d, %d", a.Seed, b.Seed)
	}
	seen := map[string]bool{}
	for i := range a.Loops {
		for j := range a.Loops[i].Tasks {
			ra, rb := string(a.Loops[i].Tasks[j].Result), string(b.Loops[i].Tasks[j].Result)
			if ra == "" || ra != rb {
				t.Errorf("loop %d task %d: %s vs %s", i, j, ra, rb)
			}
			if seen[ra] {
				t.Errorf("loop %d task %d: stream %s repeats another task's", i, j, ra)
			}
			seen[ra] = true
		}
	}
	if seen[string(c.Loops[0].Tasks[0].Result)] {
		t.Errorf("seed 43 replays seed 42")
	}
}

// TestSubtestPattern checks that a storm inside a subtest whose name needs
// quoting selects exactly itself in the children.
func TestSubtestPattern(t *testing.T) {
	for _, name := range []string{"plain", "needs quoting (a+b)*[c]", "nested/deeper"} {
		t.Run(name, func(t *testing.T) {
			res := storm.Run(t, storm.Config{Procs: 2, Args: func(task int) []string { return []string{name, fmt.Sprint(task)} }},
				func(w *storm.Worker) error { return w.SetResult(w.Args) })
			for _, tr := range res.Loops[0].Tasks {
				if want := fmt.Sprintf("[%q,\"%d\"]", name, tr.Task); string(tr.Result) != want {
					t.Errorf("task %d: result %s, want %s", tr.Task, tr.Result, want)
				}
			}
		})
	}
	if got, want := storm.RunPattern("TestX/sub_case+(1)"), `^TestX$/^sub_case\+\(1\)$`; got != want {
		t.Errorf("RunPattern = %s, want %s", got, want)
	}
}

func TestSetupRunsInParentOnly(t *testing.T) {
	var setups int
	res := storm.Run(t, storm.Config{
		Procs: 3,
		Loops: 2,
		Setup: func(dir string, loop int) error {
			setups++
			return os.WriteFile(dir+"/seed.txt", []byte(fmt.Sprint(loop)), 0o644)
		},
	}, func(w *storm.Worker) error {
		b, err := os.ReadFile(w.Dir + "/seed.txt")
		if err != nil {
			return err
		}
		if string(b) != fmt.Sprint(w.Loop) {
			return fmt.Errorf("loop %d read setup of loop %s", w.Loop, b)
		}
		return nil
	})
	if setups != 2 || len(res.Loops) != 2 {
		t.Errorf("setup ran %d times for %d loops", setups, len(res.Loops))
	}
}

func TestRunCommands(t *testing.T) {
	skipUnsupported(t)
	var progress []int
	res, err := storm.RunCommands(context.Background(), storm.CommandConfig{
		Commands: []storm.Command{
			{Argv: []string{"sh", "-c", "echo out {i}; echo err {i} >&2; exit 3"}, Count: 2},
			{Argv: []string{"sh", "-c", "echo task {i}"}, Count: 8},
		},
		Loops:    2,
		Progress: func(done, total int) { progress = append(progress, done*100+total) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(progress) != 20 || progress[19] != 2020 {
		t.Errorf("progress calls %v", progress)
	}
	for _, l := range res.Loops {
		if len(l.Procs) != 10 {
			t.Fatalf("loop %d: %d procs", l.Loop, len(l.Procs))
		}
		for _, p := range l.Procs {
			switch {
			case p.Task < 2:
				if p.ExitCode != 3 || p.Command != 0 || p.Stdout != fmt.Sprintf("out %d\n", p.Task) || p.Stderr != fmt.Sprintf("err %d\n", p.Task) {
					t.Errorf("task %d: %+v", p.Task, p)
				}
			default:
				if p.ExitCode != 0 || p.Command != 1 || p.Stdout != fmt.Sprintf("task %d\n", p.Task) {
					t.Errorf("task %d: %+v", p.Task, p)
				}
			}
			if p.Released == 0 {
				t.Errorf("task %d: no release instant", p.Task)
			}
		}
		t.Logf("command loop %d: skew %v, wall %v", l.Loop, l.Skew, l.Wall)
	}
	if n := len(res.Failed()); n != 4 {
		t.Errorf("%d failed, want 4", n)
	}
}

func TestRunCommandsTimeout(t *testing.T) {
	skipUnsupported(t)
	start := time.Now()
	res, err := storm.RunCommands(context.Background(), storm.CommandConfig{
		Commands: []storm.Command{{Argv: []string{"sleep", "30"}, Count: 2}, {Argv: []string{"true"}, Count: 1}},
		Timeout:  300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	for _, p := range res.Loops[0].Procs {
		if want := p.Task < 2; p.TimedOut != want {
			t.Errorf("task %d: timed out %v, want %v (%+v)", p.Task, p.TimedOut, want, p)
		}
	}
}

func TestRunCommandsBadCommand(t *testing.T) {
	skipUnsupported(t)
	res, err := storm.RunCommands(context.Background(), storm.CommandConfig{
		Commands: []storm.Command{{Argv: []string{"/nonexistent/storm-command"}, Count: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Loops[0].Procs[0]
	if p.ExitCode != 127 || !strings.Contains(p.Stderr, "nonexistent") {
		t.Errorf("%+v", p)
	}
}

// TestSoak is a longer storm behind -storm.long.
func TestSoak(t *testing.T) {
	if !*long {
		t.Skip("run with -storm.long")
	}
	const procs = 200
	res := storm.Run(t, storm.Config{Procs: procs, Loops: 5, Timeout: 2 * time.Minute}, sleepOp(50*time.Millisecond))
	for _, l := range res.Loops {
		if l.MaxInFlight < procs/2 {
			t.Errorf("loop %d: max in flight %d", l.Loop, l.MaxInFlight)
		}
	}
}

// TestTwoRunsOneTest calls Run twice in one test function: each child serves
// its own call, and the first call returns an empty Result in the children of
// the second.
func TestTwoRunsOneTest(t *testing.T) {
	a := storm.Run(t, storm.Config{Procs: 2}, func(w *storm.Worker) error { return w.SetResult("first") })
	b := storm.Run(t, storm.Config{Procs: 3}, func(w *storm.Worker) error { return w.SetResult("second") })
	if storm.IsChild() {
		t.Fatal("unreachable: the child of the second storm exits inside Run")
	}
	if len(a.Loops[0].Tasks) != 2 || string(a.Loops[0].Tasks[1].Result) != `"first"` ||
		len(b.Loops[0].Tasks) != 3 || string(b.Loops[0].Tasks[2].Result) != `"second"` {
		t.Errorf("a %+v\nb %+v", a.Loops[0].Tasks, b.Loops[0].Tasks)
	}
}

func TestVerboseStreamsLogs(t *testing.T) {
	res := storm.Run(t, storm.Config{Procs: 2, Verbose: true}, func(w *storm.Worker) error {
		w.Logf("hello from task %d", w.Task)
		return nil
	})
	for _, tr := range res.Loops[0].Tasks {
		if !strings.Contains(tr.Stderr, fmt.Sprintf("hello from task %d", tr.Task)) {
			t.Errorf("task %d log: %q", tr.Task, tr.Stderr)
		}
	}
}

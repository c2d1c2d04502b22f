//go:build linux

package storm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psbase/psbase/storm"
)

// alive reports whether pid is a live process (zombies are dead: they wait
// only for a reaper, which in a container may never come).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// TestHungChildKilled: a hung child (and the grandchild it started) is killed
// by the storm timeout, reported with its phase, and nothing is left behind.
func TestHungChildKilled(t *testing.T) {
	start := time.Now()
	res := storm.Run(t, storm.Config{Procs: 3, Timeout: time.Second, TolerateFailures: true}, func(w *storm.Worker) error {
		if w.Task != 1 {
			return nil
		}
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			return err
		}
		os.WriteFile(filepath.Join(w.Dir, "grandchild"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		w.Phase("hanging")
		select {}
	})
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("storm took %v with a 1s timeout", d)
	}
	l := res.Loops[0]
	failed := res.Failed()
	if len(failed) != 1 || failed[0].Task != 1 || !failed[0].TimedOut || !strings.Contains(failed[0].Err, `"hanging"`) {
		t.Fatalf("failed: %+v", failed)
	}
	b, err := os.ReadFile(filepath.Join(l.Dir, "grandchild"))
	if err != nil {
		t.Fatal(err)
	}
	gpid, _ := strconv.Atoi(string(b))
	pids := []int{gpid}
	for _, tr := range l.Tasks {
		pids = append(pids, tr.Pid)
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("pid %d outlived the storm", pid)
		}
	}
}

// TestReadyTimeout: a child that never reaches the barrier is named, with
// its log, and the harness error is fatal; observed here through a subprocess
// running a test that is expected to fail.
func TestReadyTimeoutHelper(t *testing.T) {
	if os.Getenv("STORM_TEST_READY_TIMEOUT") == "" {
		t.Skip("helper for TestReadyTimeout")
	}
	if storm.IsChild() && os.Getenv("STORM_TASK") == "2" {
		fmt.Fprintln(os.Stderr, "task 2 is stuck in setup")
		time.Sleep(time.Minute)
	}
	storm.Run(t, storm.Config{Procs: 4, ReadyTimeout: 500 * time.Millisecond}, func(w *storm.Worker) error { return nil })
}

func TestReadyTimeout(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestReadyTimeoutHelper$", "-test.count=1", "-test.v")
	// The helper fails on purpose, so it keeps its artifacts: in a
	// directory of ours, removed with it.
	cmd.Env = append(os.Environ(), "STORM_TEST_READY_TIMEOUT=1", "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("helper passed:\n%s", out)
	}
	for _, want := range []string{"ready timeout", "missing tasks: 2", "task 2 is stuck in setup"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestKillChaos kills ~30% of tasks appending to a file under a flock; kills
// land in phases, pending invokes are unknown, replacements run, and the file
// passes the set checker.
func TestKillChaos(t *testing.T) {
	const procs = 20
	res := storm.Run(t, storm.Config{
		Procs: procs,
		Seed:  7,
		Chaos: storm.Chaos{KillFraction: 0.3, KillWindow: storm.Window{From: 20 * time.Millisecond, To: 150 * time.Millisecond}, Replace: true},
		Setup: func(dir string, loop int) error {
			return os.WriteFile(filepath.Join(dir, "data"), nil, 0o644)
		},
	}, func(w *storm.Worker) error {
		f, err := os.OpenFile(filepath.Join(w.Dir, "data"), os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		n := 15
		if w.ReplacementOf >= 0 {
			n = 3
		}
		// An original outlives the kill window (150 ms), however fast the
		// machine, so that every scheduled kill finds it alive: a kill
		// that comes after its target exited is not one (Landed false).
		start := time.Now()
		for i := 0; i < n || (w.ReplacementOf < 0 && time.Since(start) < 300*time.Millisecond); i++ {
			v := fmt.Sprintf("%d-%d", w.Task, i)
			id := w.Invoke("append", v)
			w.Phase("wait-lock")
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
				return err
			}
			w.Phase("in-tx")
			if _, err := f.WriteString(v + "\n"); err != nil {
				return err
			}
			time.Sleep(time.Duration(w.Rand.IntN(1000)) * time.Microsecond)
			w.Ok(id, nil)
			w.Phase("after-commit")
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
			w.Phase("idle")
		}
		return nil
	})
	l := res.Loops[0]
	landed := 0
	for _, k := range l.Kills {
		if k.Landed {
			landed++
			if k.Phase == "" {
				t.Errorf("kill of task %d has no phase", k.Task)
			}
			if l.Tasks[k.Task].Killed != true {
				t.Errorf("task %d killed but not marked", k.Task)
			}
		}
	}
	if len(l.Kills) != 6 || landed == 0 {
		t.Fatalf("kills %+v", l.Kills)
	}
	t.Logf("kills by phase: %v; ops %d ok, %d unknown", l.KillPhases(), l.History.Count(storm.StatusOK), l.History.Count(storm.StatusInfo))
	if got := len(l.Tasks); got != procs+landed {
		t.Errorf("%d tasks, want %d originals + %d replacements", got, procs, landed)
	}
	for _, tr := range l.Tasks[procs:] {
		if tr.ReplacementOf < 0 || !l.Tasks[tr.ReplacementOf].Killed || tr.Failed() {
			t.Errorf("replacement %+v", tr)
		}
	}
	if l.History.Count(storm.StatusInfo) == 0 {
		t.Errorf("no operation with unknown outcome after %d kills", landed)
	}
	data, err := os.ReadFile(filepath.Join(l.Dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	var final []storm.Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		final = append(final, storm.Record{Value: sc.Text()})
	}
	if err := storm.CheckSet(l.History, final); err != nil {
		t.Error(err)
	}
}

// TestStopTask suspends task 1 once it is "working" and resumes it later.
func TestStopTask(t *testing.T) {
	const pause = 400 * time.Millisecond
	res := storm.Run(t, storm.Config{
		Procs: 3,
		Chaos: storm.Chaos{Stops: []storm.Stop{{Task: 1, Phase: "working", For: pause}}},
	}, func(w *storm.Worker) error {
		time.Sleep(20 * time.Millisecond)
		w.Phase("working")
		start := time.Now()
		for time.Since(start) < 100*time.Millisecond {
			time.Sleep(time.Millisecond)
		}
		return w.SetResult(time.Since(start))
	})
	l := res.Loops[0]
	if len(l.Stops) != 1 || l.Stops[0].Task != 1 || l.Stops[0].Phase != "working" {
		t.Fatalf("stops %+v", l.Stops)
	}
	for _, tr := range l.Tasks {
		var d time.Duration
		json.Unmarshal(tr.Result, &d)
		if stopped := d >= pause; stopped != (tr.Task == 1) {
			t.Errorf("task %d: working took %v", tr.Task, d)
		}
	}
}

// TestRunCommandsCancel: cancelling ctx while the commands run kills them,
// and RunCommands returns at once with ctx's error, long before the commands
// (30 s) or the loop's timeout (1 min) would end; a ctx cancelled beforehand
// starts nothing.
func TestRunCommandsCancel(t *testing.T) {
	const procs = 2
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		res *storm.CommandResult
		err error
	}
	ran := make(chan result, 1)
	go func() {
		res, err := storm.RunCommands(ctx, storm.CommandConfig{
			Commands: []storm.Command{{Argv: []string{"sh", "-c",
				`echo $$ > "$DIR/pid-{i}.tmp" && mv "$DIR/pid-{i}.tmp" "$DIR/pid-{i}" && exec sleep 30`}, Count: procs}},
			Env: []string{"DIR=" + dir},
		})
		ran <- result{res, err}
	}()
	pids := map[int]int{}
	deadline := time.Now().Add(30 * time.Second)
	for task := 0; task < procs; task++ {
		for {
			if b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("pid-%d", task))); err == nil {
				pids[task], _ = strconv.Atoi(strings.TrimSpace(string(b)))
				break
			}
			select {
			case r := <-ran:
				t.Fatalf("RunCommands returned before the cancellation: %v, %+v", r.err, r.res)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %d never ran its command", task)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel()
	canceledAt := time.Now()
	var r result
	select {
	case r = <-ran:
	case <-time.After(20 * time.Second):
		t.Fatal("RunCommands did not return 20s after the cancellation")
	}
	if d := time.Since(canceledAt); d > 5*time.Second {
		t.Errorf("RunCommands returned %v after the cancellation", d)
	}
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("RunCommands: %v, want %v", r.err, context.Canceled)
	}
	if r.res == nil || len(r.res.Loops) != 1 || len(r.res.Loops[0].Procs) != procs {
		t.Fatalf("result %+v", r.res)
	}
	for _, p := range r.res.Loops[0].Procs {
		if p.Pid != pids[p.Task] || !p.Failed() || p.TimedOut || p.ExitCode != -1 {
			t.Errorf("task %d (command pid %d): %+v", p.Task, pids[p.Task], p)
		}
		if alive(p.Pid) {
			t.Errorf("task %d: pid %d outlived the cancellation", p.Task, p.Pid)
		}
	}

	// Cancelled beforehand: nothing runs.
	start := time.Now()
	res, err := storm.RunCommands(ctx, storm.CommandConfig{
		Commands: []storm.Command{{Argv: []string{"sh", "-c", `touch "$DIR/started"; exec sleep 30`}, Count: 1}},
		Env:      []string{"DIR=" + dir},
	})
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("with a cancelled ctx: %v after %v", err, time.Since(start))
	}
	if res != nil && len(res.Failed()) != 0 {
		t.Errorf("with a cancelled ctx: %+v", res.Failed())
	}
	if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
		t.Errorf("with a cancelled ctx, the command ran")
	}
}

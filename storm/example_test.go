package storm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/psbase/psbase/storm"
)

// tb stands for the *testing.T of a test in these examples.
var tb testing.TB

// A storm of 50 processes appending under a lock, with kills.
func ExampleRun() {
	res := storm.Run(tb, storm.Config{
		Procs: 50,
		Loops: 2,
		Chaos: storm.Chaos{KillFraction: 0.2, KillWindow: storm.Window{To: 200 * time.Millisecond}, Replace: true},
		Setup: func(dir string, loop int) error { // parent only
			return os.WriteFile(filepath.Join(dir, "db"), nil, 0o644)
		},
	}, func(w *storm.Worker) error { // children only
		for i := 0; i < 20; i++ {
			v := strconv.Itoa(w.Task) + "-" + strconv.Itoa(i)
			id := w.Invoke("insert", v)
			w.Phase("wait-lock")
			// ... lock, then:
			w.Phase("in-tx")
			// ... insert v, commit, then:
			w.Ok(id, nil)
			w.Phase("after-commit")
			// ... unlock
		}
		return nil
	})
	for _, l := range res.Loops {
		fmt.Println(l.Skew, l.MaxInFlight, l.KillPhases())
		var final []storm.Record // read back from the db in l.Dir
		if err := storm.CheckSet(l.History, final); err != nil {
			tb.Error(err)
		}
	}
}

func ExampleCheckCounter() {
	h := storm.History{
		{Task: 0, Input: []byte("1"), Status: storm.StatusOK, Call: 1, Return: 2},
		{Task: 1, Input: []byte("1"), Status: storm.StatusOK, Call: 1, Return: 3},
		{Task: 2, Input: []byte("1"), Status: storm.StatusInfo, Call: 2},
	}
	fmt.Println(storm.CheckCounter(h, 2))
	fmt.Println(storm.CheckCounter(h, 1))
	// Output:
	// <nil>
	// storm: counter check failed: 1 anomalies
	// 	lost update: final value 1 < 2 acknowledged
}

func ExampleCheckRegister() {
	op := func(task int, in storm.RegisterOp, out string, call, ret int64) storm.Op {
		b, _ := json.Marshal(in)
		return storm.Op{Task: task, Key: "x", Input: b, Output: []byte(out), Status: storm.StatusOK, Call: call, Return: ret}
	}
	h := storm.History{
		op(0, storm.WriteOp("a"), "", 1, 2),
		op(1, storm.WriteOp("b"), "", 3, 4),
		op(2, storm.ReadOp(), `"a"`, 5, 6), // stale
	}
	fmt.Println(storm.CheckRegister(h, storm.RegisterOptions{}))
	// Output:
	// storm: register check failed: 1 anomalies
	// 	key "x": history of 3 ops is not linearizable
}

// A command storm, as the psbase CLI runs one. main must call
// storm.MaybeLaunch first thing.
func ExampleRunCommands() {
	res, err := storm.RunCommands(context.Background(), storm.CommandConfig{
		Commands: []storm.Command{{Argv: []string{"psbase", "insert", "db", "id={i}"}, Count: 50}},
		Timeout:  30 * time.Second,
		Progress: func(done, total int) { fmt.Fprintf(os.Stderr, "\r%d/%d", done, total) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range res.Failed() {
		fmt.Printf("task %d: exit %d timed out %v\n%s", p.Task, p.ExitCode, p.TimedOut, p.Stderr)
	}
	fmt.Println("skew", res.Loops[0].Skew)
}

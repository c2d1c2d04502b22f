// Package storm runs process storms: many real OS processes released at the
// same instant against the same data, with the evidence to judge the outcome.
// It is a Go version of the TaskRunner pattern (N processes wait on an event,
// are released together, do a critical action) and of the parallel command
// tester (run a command N times at once, fail on any non-zero exit). It knows
// nothing of the code under test.
//
// # Test-binary storms
//
// [Run] re-executes the test binary Procs times with -test.run selecting only
// the calling test. In each child the test function runs again up to its call
// of Run, which there runs the body as one task and exits the process; in the
// parent Run returns a [Result]. Code before Run therefore runs in every
// child too: create shared files in [Config.Setup], which runs only in the
// parent, or guard them with ![IsChild].
//
//	func TestCounter(t *testing.T) {
//		res := storm.Run(t, storm.Config{
//			Procs: 50,
//			Loops: 3,
//			Setup: func(dir string, loop int) error {
//				return os.WriteFile(filepath.Join(dir, "counter"), []byte("0"), 0o644)
//			},
//		}, func(w *storm.Worker) error {
//			// In a child, as task w.Task of w.Procs, just after the release.
//			id := w.Invoke("counter", 1)
//			if err := increment(filepath.Join(w.Dir, "counter")); err != nil {
//				w.Fail(id, err) // only if it certainly did not happen
//				return err
//			}
//			w.Ok(id, nil)
//			return nil
//		})
//		for _, l := range res.Loops {
//			final := readCounter(t, filepath.Join(l.Dir, "counter"))
//			if err := storm.CheckCounter(l.History, final); err != nil {
//				t.Error(err)
//			}
//		}
//	}
//
// The barrier is exact: each child writes "ready" to a pipe and blocks reading
// another pipe; once all Procs children are ready the parent closes it, and
// every child wakes. Each child then takes its release instant from
// CLOCK_MONOTONIC, which, unlike the monotonic reading in time.Time, is shared
// by all processes of the machine; [LoopResult.Skew] is the spread of those
// instants. On a 2-core machine 50 children are released within a few
// milliseconds.
//
// Each child is in a process group of its own. At the loop's timeout the
// parent kills every group still running (taking grandchildren along) and
// reports the hung tasks with the phase they were in; a child whose parent
// dies exits by itself (it watches a lifeline pipe). Per-task logs, histories
// and the loops' shared directories live in an artifacts directory that is
// kept, and its path logged, when the test fails.
//
// # Histories, phases and chaos
//
// [Worker.Invoke] before and [Worker.Ok] or [Worker.Fail] after each
// operation record a Jepsen-style history. Each event is one write(2) to an
// O_APPEND file, so a SIGKILLed child leaves its pending invoke behind; in
// the merged [History] such an operation has [StatusInfo] (outcome unknown).
// [History.MaxInFlight] proves the storm overlapped. [Worker.Phase] marks
// phases ("wait-lock", "in-tx", "after-commit"); the phase lives in the page
// cache too, so the parent knows the phase at the instant of a kill. [Chaos]
// kills a fraction of the tasks with SIGKILL at random instants (and starts
// replacements), and stops chosen tasks with SIGSTOP (optionally once they
// reach a phase) for a while.
//
// # Checkers
//
// [CheckCounter] (acknowledged ≤ final ≤ attempted), [CheckSet] (every
// acknowledged insert present exactly once, nothing no one wrote) and
// [CheckRegister] (linearizability of per-key registers with porcupine) each
// return a [*CheckError] listing every anomaly.
//
// # Command storms
//
// [RunCommands] runs arbitrary commands N times at once. They cannot join a
// barrier themselves, so each starts under a launcher: the calling program
// re-executes itself, and its main must call [MaybeLaunch] first thing; the
// launcher joins the barrier, takes its release instant, and exec(2)s the
// command under the same pid.
//
// Process storms need Linux or macOS. On other systems Run skips the test and
// RunCommands returns an error wrapping [errors.ErrUnsupported]; the checkers
// work everywhere.
package storm

//go:build linux

package psbase

// Group commit (groupcommit.go): combined writes are each applied exactly
// once, each caller gets its own result, through combiner kills, stopped
// combiners and hostile queue files.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/psbase/psbase/storm"
)

var gcFields = []Field{{Name: "tag", Type: String, Unique: true}, {Name: "n", Type: Int}}

// TestGroupCommitStorm: 20 processes released together insert, increment
// a counter and collide on a unique value. Every acknowledged insert is
// there once under its acknowledged ID, every collision but the first got
// its own ErrDuplicate (its neighbours in the batch were not failed), the
// counter is exact, and batches of more than one operation happened.
func TestGroupCommitStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("process storm")
	}
	const procs, k = 20, 25
	type result struct {
		Acks         map[string]uint64
		Dups, Adds   int
		Batches, Ops uint64
		DupWon       bool
	}
	res := storm.Run(t, storm.Config{
		Procs:   procs,
		Timeout: 2 * time.Minute,
		Setup: func(dir string, loop int) error {
			s, err := Create(context.Background(), filepath.Join(dir, "gc.db"), gcFields)
			if err == nil {
				_, err = s.Insert(context.Background(), Values{"tag": "counter", "n": 0})
			}
			return err
		},
	}, func(w *storm.Worker) error {
		ctx := context.Background()
		s, err := Open(ctx, filepath.Join(w.Dir, "gc.db"), WithLockTimeout(time.Minute))
		if err != nil {
			return err
		}
		defer s.Close()
		r := result{Acks: map[string]uint64{}}
		for i := range k {
			tag := fmt.Sprintf("t%d-%d", w.Task, i)
			id, err := s.Insert(ctx, Values{"tag": tag, "n": i})
			if err != nil {
				return fmt.Errorf("insert %s: %w", tag, err)
			}
			r.Acks[tag] = id
			if i%5 == 0 {
				_, err := s.Insert(ctx, Values{"tag": "dup", "n": w.Task})
				switch {
				case err == nil:
					r.DupWon = true
				case errors.Is(err, ErrDuplicate):
					r.Dups++
				default:
					return fmt.Errorf("dup insert: %w", err)
				}
			}
			if i%3 == 0 {
				if _, err := s.Add(ctx, 1, "n", 1); err != nil {
					return fmt.Errorf("add: %w", err)
				}
				r.Adds++
			}
		}
		st, err := s.Stats(ctx)
		if err != nil {
			return err
		}
		r.Batches, r.Ops = st.CombinedBatches, st.CombinedOps
		return w.SetResult(r)
	})
	l := res.Loops[0]
	s, err := Open(context.Background(), filepath.Join(l.Dir, "gc.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rep, err := s.Check(context.Background()); err != nil || !rep.OK() {
		t.Fatalf("Check: %v %v", err, rep.Problems)
	}
	recs, _ := s.Select(context.Background(), Query{})
	byTag := map[string]Record{}
	for _, r := range recs {
		byTag[r.Values["tag"].(string)] = r
	}
	var acks, dups, adds, won int
	var batches, ops uint64
	for _, tr := range l.Tasks {
		var r result
		if err := json.Unmarshal(tr.Result, &r); err != nil {
			t.Fatalf("task %d: result %s: %v", tr.Task, tr.Result, err)
		}
		for tag, id := range r.Acks {
			acks++
			if got, ok := byTag[tag]; !ok || got.ID != id {
				t.Errorf("acknowledged insert %s as record %d: the store has %+v", tag, id, got)
			}
		}
		dups += r.Dups
		adds += r.Adds
		if r.DupWon {
			won++
		}
		batches += r.Batches
		ops += r.Ops
	}
	if len(recs) != acks+2 {
		t.Errorf("%d records, want %d acknowledged inserts + counter + one dup", len(recs), acks)
	}
	if want := procs * ((k + 4) / 5); won != 1 || dups != want-1 {
		t.Errorf("the unique value: %d inserts won, %d got ErrDuplicate; want 1 and %d", won, dups, want-1)
	}
	if n := byTag["counter"].Values["n"].(int64); n != int64(adds) {
		t.Errorf("counter %d after %d acknowledged Adds", n, adds)
	}
	t.Logf("%d processes: %d operations in %d batches (mean %.1f per commit)", procs, ops, batches, float64(ops)/float64(max(batches, 1)))
	if ops <= batches {
		t.Errorf("no batch combined more than one operation (%d operations, %d batches): group commit did not happen", ops, batches)
	}
}

// gcChild is the child of TestGroupCommitCombinerKilled: it inserts k
// records, appending "id tag" to its ack file after each acknowledgement;
// with die set, the first time it commits a batch holding another
// process's operation it kills itself (before or after the commit).
func gcChild(ctx context.Context, db string) {
	task := os.Getenv("PSBASE_GC_TASK")
	die := os.Getenv("PSBASE_GC_DIE")
	s, err := Open(ctx, db, WithLockTimeout(time.Minute))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	s.cfg.weak.gcNoRecords = os.Getenv("PSBASE_GC_NORECORDS") == "1"
	if die != "" {
		s.cfg.weak.gcStage = func(stage string, others int) {
			if stage == die && others > 0 {
				fmt.Fprintf(os.Stderr, "dying at %s with %d others\n", stage, others)
				os.WriteFile(db+".died-"+task, []byte(stage), 0o644)
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	acks, err := os.OpenFile(db+".acks-"+task, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		os.Exit(3)
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n') // the release
	for i := range 40 {
		tag := fmt.Sprintf("c%s-%d", task, i)
		id, err := s.Insert(ctx, Values{"tag": tag, "n": i})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(3)
		}
		fmt.Fprintf(acks, "%d %s\n", id, tag)
	}
	os.Exit(0)
}

// gcKillRound runs one round of TestGroupCommitCombinerKilled: procs
// children released together, the first dying where die says. It returns
// what is wrong with the store afterwards ("" if nothing) and whether a
// combiner died with others' operations in its batch.
func gcKillRound(t *testing.T, procs int, die string, noRecords bool) (problem string, died bool) {
	t.Helper()
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "gc.db")
	if _, err := Create(ctx, db, gcFields); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var stdins []*os.File
	for i := range procs {
		cmd := helperCmd(t, "gc-insert", db)
		cmd.Env = append(cmd.Env, "PSBASE_GC_TASK="+strconv.Itoa(i))
		if i == 0 || i == 1 {
			cmd.Env = append(cmd.Env, "PSBASE_GC_DIE="+die) // two would-be victims
		}
		if noRecords {
			cmd.Env = append(cmd.Env, "PSBASE_GC_NORECORDS=1")
		}
		r, w, _ := os.Pipe()
		cmd.Stdin = r
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			t.Fatalf("child %d said %q", i, line)
		}
		cmds = append(cmds, cmd)
		stdins = append(stdins, w)
	}
	for _, w := range stdins {
		w.Write([]byte("go\n"))
		w.Close()
	}
	var failed []string
	for i, cmd := range cmds {
		err := cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL) {
			// It got an error for its own insert (its stdout says which).
			failed = append(failed, fmt.Sprintf("child %d: %v", i, err))
		}
	}
	if m, _ := filepath.Glob(db + ".died-*"); len(m) > 0 {
		died = true
	}
	s, err := Open(ctx, db, WithLockTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		return fmt.Sprintf("Check: %v %v", err, rep.Problems), died
	}
	recs, err := s.Select(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	byTag := map[string]uint64{}
	for _, r := range recs {
		byTag[r.Values["tag"].(string)] = r.ID
	}
	bad := failed
	if len(byTag) != len(recs) {
		bad = append(bad, fmt.Sprintf("%d records for %d tags", len(recs), len(byTag)))
	}
	acked := 0
	files, _ := filepath.Glob(db + ".acks-*")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for line := range strings.Lines(string(b)) {
			idText, tag, _ := strings.Cut(strings.TrimSpace(line), " ")
			id, _ := strconv.ParseUint(idText, 10, 64)
			acked++
			if got, ok := byTag[tag]; !ok || got != id {
				bad = append(bad, fmt.Sprintf("acknowledged %s as %d, store has %d (present %v)", tag, id, got, ok))
			}
		}
	}
	// Unacknowledged records may exist only for the dead processes' own
	// last insert (one each at most).
	if extra := len(recs) - acked; extra < 0 || extra > 2 {
		bad = append(bad, fmt.Sprintf("%d records, %d acknowledged", len(recs), acked))
	}
	if len(bad) > 5 {
		bad = bad[:5]
	}
	return strings.Join(bad, "; "), died
}

// TestGroupCommitCombinerKilled: a combiner SIGKILLed before its commit or
// after it (before publishing) loses and doubles nothing, and every
// submitter in its batch still learns its real ID: exactly once. The
// negative control ignores the idempotency records: the batch a dead
// combiner committed is applied again.
func TestGroupCommitCombinerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("process storm")
	}
	for _, die := range []string{"taken", "committed"} {
		t.Run(die, func(t *testing.T) {
			for round := range 6 {
				problem, died := gcKillRound(t, 8, die, false)
				if problem != "" {
					t.Fatalf("round %d (a combiner killed at %q): %s", round, die, problem)
				}
				if died {
					return
				}
			}
			t.Fatalf("in 6 rounds no combiner ever had another process's write in its batch: the test did not run")
		})
	}
	t.Run("negative_norecords", func(t *testing.T) {
		for round := range 6 {
			problem, died := gcKillRound(t, 8, "committed", true)
			if died && problem != "" {
				t.Logf("caught, as it must be (round %d): %s", round, problem)
				return
			}
		}
		t.Fatal("negative control: without idempotency records a combiner killed after its commit never doubled a write")
	})
}

// gcStopChild is the child of TestGroupCommitDeadline: it takes the
// store's writer lock, says so, waits for "combine" on stdin, then combines
// and stops itself (SIGSTOP) right after taking the queued requests.
func gcStopChild(ctx context.Context, db string) {
	s, err := Open(ctx, db)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	g, err := s.acquire(ctx, "hold", true, false)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	s.cfg.weak.gcStage = func(stage string, others int) {
		if stage == "taken" {
			fmt.Printf("took %d\n", others)
			syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		}
	}
	fmt.Println("holding")
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')
	if _, err := s.combine(g, &gcOp{kind: gcInsert, vals: Values{"tag": "combiner", "n": 0}}, nil); err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("combined")
	in.ReadString('\n')
	os.Exit(0)
}

// TestGroupCommitDeadline: a write whose deadline passes while nobody took
// it is withdrawn (ErrLockTimeout, never applied, even after the lock
// frees); one whose combiner took it and then stopped gets
// ErrUnknownOutcome naming that combiner's pid, at its deadline, not after.
func TestGroupCommitDeadline(t *testing.T) {
	ctx := context.Background()
	s, db := newTestStoreFields(t, gcFields)
	defer s.Close()
	if _, err := s.Insert(ctx, Values{"tag": "first", "n": 1}); err != nil { // makes the queue
		t.Fatal(err)
	}
	cmd := helperCmd(t, "gc-stop", db)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	}()
	lines := bufio.NewReader(out)
	if l, _ := lines.ReadString('\n'); l != "holding\n" {
		t.Fatalf("child: %q", l)
	}

	// Nobody takes it: withdrawn at the deadline.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := s.Insert(short, Values{"tag": "withdrawn", "n": 2})
	cancel()
	if !errors.Is(err, ErrLockTimeout) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("a queued write nobody took, at its deadline: %v, want ErrLockTimeout", err)
	}

	// Taken by a combiner that then stops.
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		dl, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		_, err := s.Insert(dl, Values{"tag": "taken", "n": 3})
		errc <- err
	}()
	waitSubmitted(t, db+suffixQueue)
	stdin.Write([]byte("combine\n"))
	if l, _ := lines.ReadString('\n'); l != "took 1\n" {
		t.Fatalf("child: %q", l)
	}
	err = <-errc
	took := time.Since(start)
	var pidText = strconv.Itoa(cmd.Process.Pid)
	if !errors.Is(err, ErrUnknownOutcome) || !strings.Contains(err.Error(), "process "+pidText) {
		t.Fatalf("a write taken by a stopped combiner, at its deadline: %v, want ErrUnknownOutcome naming pid %s", err, pidText)
	}
	if took > 3*time.Second {
		t.Errorf("the caller waited %v, past its 1.5 s deadline", took)
	}
	// The combiner resumes: the taken write is applied, the withdrawn one
	// never.
	syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
	if l, _ := lines.ReadString('\n'); l != "combined\n" {
		t.Fatalf("child: %q", l)
	}
	stdin.Write([]byte("exit\n"))
	cmd.Wait()
	if _, err := s.GetBy(ctx, "tag", "taken"); err != nil {
		t.Errorf("the taken write after its combiner resumed: %v", err)
	}
	if _, err := s.GetBy(ctx, "tag", "withdrawn"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the withdrawn write: %v, want ErrNotFound (never applied)", err)
	}
}

// waitSubmitted waits until a slot of the queue file is SUBMITTED.
func waitSubmitted(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		for i := range gcqSlots {
			off := gcqHeader + i*gcqSlotSize
			if off+4 <= len(b) && binary.LittleEndian.Uint32(b[off:]) == gcSubmitted {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("no request was ever queued")
}

// TestGroupCommitInProcess: goroutines of one process, on one Store and on
// two, combine too, each with its own result: inserts, collisions on a
// unique value, versioned updates that conflict, increments, deletes of
// missing records.
func TestGroupCommitInProcess(t *testing.T) {
	ctx := context.Background()
	a, db := newTestStoreFields(t, gcFields)
	defer a.Close()
	b, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	counter, _ := a.Insert(ctx, Values{"tag": "counter", "n": 0})
	victim, _ := a.Insert(ctx, Values{"tag": "victim", "n": 0})
	rec, _ := a.Get(ctx, victim)
	var wg sync.WaitGroup
	var mu sync.Mutex
	dupWins, dupErrs, conflicts, updated, adds := 0, 0, 0, 0, 0
	ids := map[uint64]string{}
	for g := range 16 {
		s := a
		if g%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				tag := fmt.Sprintf("g%d-%d", g, i)
				id, err := s.Insert(ctx, Values{"tag": tag, "n": i})
				if err != nil {
					t.Errorf("insert: %v", err)
					return
				}
				_, derr := s.Insert(ctx, Values{"tag": "dup"})
				_, uerr := s.Update(ctx, rec, Values{"n": g})
				v, aerr := s.Add(ctx, counter, "n", 1)
				_, nerr := s.Delete(ctx, 1<<40)
				mu.Lock()
				ids[id] = tag
				switch {
				case derr == nil:
					dupWins++
				case errors.Is(derr, ErrDuplicate):
					dupErrs++
					var de *DuplicateError
					if !errors.As(derr, &de) || de.Field != "tag" || de.Value != "dup" {
						t.Errorf("a duplicate's details were lost: %v %+v", derr, de)
					}
				default:
					t.Errorf("dup: %v", derr)
				}
				switch {
				case uerr == nil:
					updated++
				case errors.Is(uerr, ErrConflict):
					conflicts++
					var ce *ConflictError
					if !errors.As(uerr, &ce) || ce.ID != victim || ce.Have != 1 {
						t.Errorf("a conflict's details were lost: %v %+v", uerr, ce)
					}
				default:
					t.Errorf("update: %v", uerr)
				}
				if aerr != nil || v < 1 {
					t.Errorf("add: %d %v", v, aerr)
				}
				adds++
				if !errors.Is(nerr, ErrNotFound) {
					t.Errorf("delete of a missing record: %v", nerr)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(ids) != 16*20 || dupWins != 1 || dupErrs != 16*20-1 || updated != 1 || conflicts != 16*20-1 {
		t.Errorf("%d distinct IDs (want %d), dup %d won %d refused, update %d applied %d conflicts", len(ids), 16*20, dupWins, dupErrs, updated, conflicts)
	}
	if n, _ := a.Get(ctx, counter); n.Values["n"].(int64) != int64(adds) {
		t.Errorf("counter %v after %d Adds", n.Values["n"], adds)
	}
	for id, tag := range ids {
		if r, err := a.Get(ctx, id); err != nil || r.Values["tag"] != tag {
			t.Errorf("record %d: %v %v, want %s", id, r.Values, err, tag)
		}
	}
	sa, _ := a.Stats(ctx)
	sb, _ := b.Stats(ctx)
	t.Logf("combined: %d operations in %d batches", sa.CombinedOps+sb.CombinedOps, sa.CombinedBatches+sb.CombinedBatches)
	if rep, err := a.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check: %v %v", err, rep.Problems)
	}
}

// TestGroupCommitHostileQueue: a queue file that is a link, a FIFO, a
// directory, another user's file, truncated under its mappings, or full of
// forged requests changes nothing outside the store and breaks no write:
// writes take the direct path, or the forged requests fail alone.
func TestGroupCommitHostileQueue(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"symlink", "hardlink", "fifo", "dir", "truncated", "forged"} {
		t.Run(kind, func(t *testing.T) {
			s, db := newTestStoreFields(t, gcFields)
			defer s.Close()
			q := db + suffixQueue
			victim := filepath.Join(filepath.Dir(db), "victim")
			os.WriteFile(victim, []byte("precious"), 0o644)
			switch kind {
			case "symlink":
				os.Symlink(victim, q)
			case "hardlink":
				os.Link(victim, q)
			case "fifo":
				unix.Mkfifo(q, 0o644)
			case "dir":
				os.Mkdir(q, 0o755)
			case "truncated", "forged":
				if _, err := s.Insert(ctx, Values{"tag": "before", "n": 0}); err != nil { // makes the queue
					t.Fatal(err)
				}
			}
			switch kind {
			case "truncated":
				if err := os.Truncate(q, 100); err != nil {
					t.Fatal(err)
				}
			case "forged":
				// A live "owner" (this test's own descriptor holds the
				// slots' OFD locks) with garbage requests.
				f, err := os.OpenFile(q, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				for i := range 8 {
					lk := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(200 + i), Len: 1}
					if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
						t.Fatal(err)
					}
					slot := make([]byte, gcqSlotSize)
					binary.LittleEndian.PutUint32(slot[sState:], gcSubmitted)
					binary.LittleEndian.PutUint32(slot[sLen:], uint32([]int{0, 5, 100, gcPayloadMax, 1 << 30, 7, 9, 64}[i]))
					for j := sData; j < len(slot); j++ {
						slot[j] = byte(j*7 + i)
					}
					slot[sData] = byte(i % 9) // kinds, valid and not
					f.WriteAt(slot, int64(gcqHeader+(200+i)*gcqSlotSize))
				}
			}
			for i := range 5 {
				if _, err := s.Insert(ctx, Values{"tag": fmt.Sprintf("x%d", i), "n": i}); err != nil {
					t.Fatalf("insert beside a %s queue file: %v", kind, err)
				}
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Errorf("the file the queue named was changed: %q", b)
			}
			if rep, err := s.Check(ctx); err != nil || !rep.OK() {
				t.Errorf("Check: %v %v", err, rep.Problems)
			}
			n, _ := s.Len(ctx)
			want := 5
			if kind == "truncated" || kind == "forged" {
				want = 6
			}
			if n != want {
				t.Errorf("%d records, want %d: a forged request was applied?", n, want)
			}
		})
	}
}

// formatTwoCommit is the last release of format 2: format 3 only added the
// group-commit bucket "requests", so its psbase reads and writes a format 3
// store, and its Cleanup keeps the bucket (FORMAT.md).
const formatTwoCommit = "83efb6b"

// TestFormatTwoPsbaseOnFormatThreeStore: the format 2 release's CLI reads,
// writes, checks and compacts a format 3 store that group commit wrote,
// and afterwards this psbase finds it sound, its requests bucket kept.
func TestFormatTwoPsbaseOnFormatThreeStore(t *testing.T) {
	bin, dir := buildRelease(t, formatTwoCommit)
	ctx := context.Background()
	db := filepath.Join(dir, "v3.db")
	s, err := Create(ctx, db, []Field{{Name: "name", Type: String}})
	if err != nil {
		t.Fatal(err)
	}
	// The first insert makes the queue. The next waits behind a
	// transaction of another handle, so it travels through the queue and
	// leaves its idempotency record.
	if _, err := s.Insert(ctx, Values{"name": "x"}); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s2.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Insert(ctx, Values{"name": "x"}); done <- err }()
	waitSubmitted(t, db+suffixQueue)
	tx.Rollback()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Insert(ctx, Values{"name": "x"}); err != nil {
			t.Fatal(err)
		}
	}
	hasRequests := func() bool {
		found := false
		bdb, err := bolt.Open(db, 0o644, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer bdb.Close()
		bdb.View(func(tx *bolt.Tx) error { found = tx.Bucket(bucketRequests) != nil; return nil })
		return found
	}
	if st, _ := s.Stats(ctx); st.FormatVersion != FormatVersion {
		t.Fatalf("format %d", st.FormatVersion)
	}
	// This psbase writes format 4 (the change log); take the store back
	// to what a format 3 psbase leaves.
	toFormatThree(t, db)
	if !hasRequests() {
		t.Fatal("writes through the queue left no requests bucket")
	}
	for _, args := range [][]string{{"get", db, "1"}, {"insert", db, "name=y"}, {"check", db}, {"cleanup", db}, {"count", db}} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("psbase %s %v: %v\n%s", formatTwoCommit, args, err, out)
		}
	}
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check after the format 2 psbase: %v %v", err, rep.Problems)
	}
	if n, _ := s.Len(ctx); n != 5 {
		t.Errorf("%d records, want 5", n)
	}
	if !hasRequests() {
		t.Error("the format 2 psbase's Cleanup dropped the requests bucket")
	}
}

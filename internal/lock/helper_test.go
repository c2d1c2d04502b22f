package lock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The tests run real child processes: the test binary re-executes itself
// with PSBASE_LOCK_HELPER set and -test.run=^TestHelperProcess$, and
// that test then acts as the child (os/exec style). Children report on
// stdout with lines "lockresult KEY VALUE".

const helperEnv = "PSBASE_LOCK_HELPER"

// helper describes one helper process.
type helper struct {
	mode  string            // what the child does, see TestHelperProcess
	db    string            // the store path
	proto Protocol          // the protocol
	args  map[string]string // further PSBASE_LOCK_* parameters
}

func command(t testing.TB, c helper) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+c.mode,
		"PSBASE_LOCK_DB="+c.db,
		"PSBASE_LOCK_PROTO="+strconv.Itoa(int(c.proto)),
		// A -race child would sleep 1 s before exiting (ThreadSanitizer's
		// atexit_sleep_ms); a race it finds still fails it with exit code 66.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
	)
	for k, v := range c.args {
		cmd.Env = append(cmd.Env, "PSBASE_LOCK_"+k+"="+v)
	}
	cmd.Stderr = os.Stderr
	return cmd
}

// runningChild is a started helper with its stdin (closing it tells the
// child to stop) and a channel of its result lines.
type runningChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan error
}

func startChild(t testing.TB, c helper) *runningChild {
	t.Helper()
	cmd := command(t, c)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rc := &runningChild{cmd: cmd, stdin: stdin, lines: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "lockresult "); ok {
				rc.lines <- s
			}
		}
		close(rc.lines)
		rc.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
	})
	return rc
}

// expect waits for the result line starting with key and returns its value.
func (rc *runningChild) expect(t testing.TB, key string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-rc.lines:
			if !ok {
				t.Fatalf("child %d exited before reporting %q", rc.cmd.Process.Pid, key)
			}
			k, v, _ := strings.Cut(line, " ")
			if k == key {
				return v
			}
		case <-deadline:
			t.Fatalf("child %d did not report %q within %v", rc.cmd.Process.Pid, key, timeout)
		}
	}
}

// wait closes stdin and waits for the child to exit.
func (rc *runningChild) wait(t testing.TB) {
	t.Helper()
	_ = rc.stdin.Close()
	for range rc.lines {
	}
	if err := <-rc.done; err != nil {
		t.Fatalf("child %d: %v", rc.cmd.Process.Pid, err)
	}
}

func report(key string, v any) { fmt.Printf("lockresult %s %v\n", key, v) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv("PSBASE_LOCK_" + name)); err == nil {
		return v
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv("PSBASE_LOCK_" + name)); err == nil {
		return v
	}
	return def
}

// TestHelperProcess is not a test: it is the body of the child processes.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for the lock tests")
	}
	if err := runHelper(mode); err != nil {
		fmt.Fprintf(os.Stderr, "lock helper %s: %v\n", mode, err)
		os.Exit(3)
	}
	os.Exit(0)
}

func runHelper(mode string) error {
	db := os.Getenv("PSBASE_LOCK_DB")
	cfg := Config{Protocol: Protocol(envInt("PROTO", 0))}
	l, err := New(db, cfg)
	if err != nil {
		return err
	}
	l.noRecheck = os.Getenv("PSBASE_LOCK_NORECHECK") == "1"
	ctx := context.Background()
	exclusive := os.Getenv("PSBASE_LOCK_SHARED") != "1"
	op := orDefault(os.Getenv("PSBASE_LOCK_OP"), "test")

	switch mode {
	case "counter":
		// n times: lock, read the counter file, increment, write, unlock.
		counter := db + ".counter"
		nolock := os.Getenv("PSBASE_LOCK_NOLOCK") == "1"
		gap := envDur("GAP", 0)
		for range envInt("N", 50) {
			release := func() {}
			if !nolock {
				if release, _, err = l.acquire(ctx, true, "increment"); err != nil {
					return err
				}
			}
			b, err := os.ReadFile(counter)
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if gap > 0 {
				time.Sleep(gap)
			}
			if err := os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o644); err != nil {
				return err
			}
			release()
		}
		return nil

	case "hold":
		// Lock, report, hold until stdin is closed.
		release, _, err := l.acquire(ctx, exclusive, op)
		if err != nil {
			return err
		}
		report("held", os.Getpid())
		_, _ = io.Copy(io.Discard, os.Stdin)
		release()
		report("released", os.Getpid())
		return nil

	case "loop":
		// Until stdin is closed: lock, hold for HOLD, unlock, GAP; report the count.
		hold, gap := envDur("HOLD", time.Millisecond), envDur("GAP", 0)
		var stop atomic.Bool
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop.Store(true) }()
		n := 0
		for !stop.Load() {
			release, _, err := l.acquire(ctx, exclusive, op)
			if err != nil {
				return err
			}
			if n == 0 {
				report("ready", os.Getpid())
			}
			time.Sleep(hold)
			release()
			n++
			if gap > 0 {
				time.Sleep(gap)
			}
		}
		report("count", n)
		return nil

	case "destroy":
		// n times: lock exclusively, claim the marker (O_EXCL: fails if another
		// holder has it), give it back, every DESTROY-th time remove the lock
		// files, unlock. The marker goes before the files: once they are
		// removed a newcomer may lock the new ones at once (as after
		// Destroy), and the remover is no longer in its critical section.
		marker := db + ".marker"
		violations := 0
		every := envInt("DESTROY", 3)
		for i := range envInt("N", 50) {
			release, _, err := l.acquire(ctx, true, "destroy")
			if err != nil {
				return err
			}
			f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				violations++
			} else {
				_ = f.Close()
			}
			time.Sleep(200 * time.Microsecond)
			if err == nil {
				_ = os.Remove(marker)
			}
			if i%every == 0 {
				if err := l.RemoveFiles(); err != nil {
					return err
				}
			}
			release()
		}
		report("violations", violations)
		return nil

	case "perm":
		// Run as an unprivileged user: report how acquisitions fail.
		for _, c := range []struct {
			name      string
			exclusive bool
		}{{"shared", false}, {"exclusive", true}} {
			release, _, err := l.acquire(ctx, c.exclusive, "perm")
			if err != nil {
				report(c.name, fmt.Sprintf("err readonly=%v permission=%v %v",
					errors.Is(err, ErrReadOnly), errors.Is(err, fs.ErrPermission), strings.ReplaceAll(err.Error(), "\n", " ")))
				continue
			}
			release()
			report(c.name, "ok")
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func newTestFile(t testing.TB, db string, proto Protocol) *File {
	t.Helper()
	l, err := New(db, Config{Protocol: proto})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// acquire is Acquire for the tests: lock files may be created, and only
// the release function is returned.
func (l *File) acquire(ctx context.Context, exclusive bool, op string) (release func(), waited time.Duration, err error) {
	g, waited, err := l.Acquire(ctx, exclusive, op, true)
	if err != nil {
		return nil, waited, err
	}
	return g.release, waited, nil
}

package main

// interrupt_linux_test.go: Ctrl-C (SIGINT) while psbase waits for the lock
// exits 130 and says it was interrupted, not "lock timeout". Real
// processes: one holds the lock, one waits and gets the signal. Linux only:
// the waiter is seen waiting in /proc/locks (psbase.LockHolders), an event
// the test waits for instead of sleeping.
//
// May touch: a store in t.TempDir(); the two child processes it starts.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psbase/psbase"
)

// waitUntil polls cond (an event: a file appears, a process shows in
// /proc/locks) until it holds or limit passes.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen in %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInterruptWhileWaitingForLock(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "x.db")
	call(t, 0, "create", db, "n:int")
	locked := filepath.Join(dir, "locked")
	holder := exec.Command("psbase-holdlock", db, locked, filepath.Join(dir, "release"))
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	waitUntil(t, 20*time.Second, "the holder taking the lock", func() bool {
		_, err := os.Stat(locked)
		return err == nil
	})

	// waiter starts psbase with the given lock timeout and arguments and
	// returns it; the caller waits until LockHolders shows it waiting.
	waiter := func(timeout string, args ...string) (*exec.Cmd, *bytes.Buffer) {
		var stderr bytes.Buffer
		c := exec.Command("psbase", append([]string{"--timeout", timeout}, args...)...)
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c, &stderr
	}
	isWaiting := func(pid int) func() bool {
		return func() bool {
			hs, _ := psbase.LockHolders(db)
			for _, h := range hs {
				if h.PID == pid && h.Waiting {
					return true
				}
			}
			return false
		}
	}
	exitOf := func(c *exec.Cmd) int {
		err := c.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}

	// An insert interrupted by SIGINT, and an increment (a combinable
	// operation, published in the queue while it waits) stopped by SIGTERM,
	// both while waiting forever: exit 130, "interrupted".
	for _, tc := range []struct {
		sig  syscall.Signal
		args []string
	}{
		{syscall.SIGINT, []string{"insert", db, "n=1"}},
		{syscall.SIGTERM, []string{"incr", db, "1", "n"}},
	} {
		c, stderr := waiter("0", tc.args...)
		waitUntil(t, 20*time.Second, "psbase "+tc.args[0]+" waiting for the lock", isWaiting(c.Process.Pid))
		if err := c.Process.Signal(tc.sig); err != nil {
			t.Fatal(err)
		}
		if code := exitOf(c); code != exitSignal {
			t.Fatalf("%s after %v: exit %d, want %d; stderr: %s", tc.args[0], tc.sig, code, exitSignal, stderr)
		}
		msg := stderr.String()
		if !strings.Contains(msg, "interrupted") || strings.Contains(msg, "lock timeout") {
			t.Fatalf("%s after %v: the message does not say interrupted (or still says lock timeout): %q", tc.args[0], tc.sig, msg)
		}
	}

	// Negative control: a real lock timeout, no signal, says "lock
	// timeout" and exits 6, so the assertions above tell the two apart.
	c, stderr := waiter("100ms", "insert", db, "n=1")
	if code := exitOf(c); code != exitTimeout || !strings.Contains(stderr.String(), "lock timeout") || strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("lock timeout: exit %d, stderr %q", code, stderr)
	}
	holder.Process.Kill()
	holder.Wait()
	out, _ := call(t, 0, "count", db)
	if out != "0\n" {
		t.Fatalf("an interrupted insert wrote: count %q", out)
	}
}

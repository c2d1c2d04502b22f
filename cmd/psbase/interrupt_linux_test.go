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
	holder := exec.Command("psbase-holdlock", db, locked, "60s")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	waitUntil(t, 20*time.Second, "the holder taking the lock", func() bool {
		_, err := os.Stat(locked)
		return err == nil
	})

	// waiter starts psbase insert with the given lock timeout and returns
	// it once it is waiting for the lock.
	waiter := func(timeout string) (*exec.Cmd, *bytes.Buffer) {
		var stderr bytes.Buffer
		c := exec.Command("psbase", "--timeout", timeout, "insert", db, "n=1")
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

	c, stderr := waiter("0") // wait forever
	waitUntil(t, 20*time.Second, "psbase waiting for the lock", isWaiting(c.Process.Pid))
	if err := c.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := exitOf(c); code != exitSignal {
		t.Fatalf("after SIGINT: exit %d, want %d; stderr: %s", code, exitSignal, stderr)
	}
	msg := stderr.String()
	if !strings.Contains(msg, "interrupted") || strings.Contains(msg, "lock timeout") {
		t.Fatalf("after SIGINT the message does not say interrupted (or still says lock timeout): %q", msg)
	}

	// Negative control: a real lock timeout, no signal, says "lock
	// timeout" and exits 6, so the assertions above tell the two apart.
	c, stderr = waiter("100ms")
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

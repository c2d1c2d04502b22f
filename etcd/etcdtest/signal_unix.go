//go:build unix

package etcdtest

// signal_unix.go: pausing and resuming a member (SIGSTOP, SIGCONT).
//
// May touch: the member processes.

import (
	"os"
	"syscall"
)

func pause(p *os.Process) error  { return p.Signal(syscall.SIGSTOP) }
func resume(p *os.Process) error { return p.Signal(syscall.SIGCONT) }

// Pause stops process p (SIGSTOP) — a host frozen by a GC pause or a VM
// migration, from the cluster's point of view. Tests use it on their own
// worker processes too.
func Pause(p *os.Process) error { return pause(p) }

// Resume continues a paused process (SIGCONT).
func Resume(p *os.Process) error { return resume(p) }

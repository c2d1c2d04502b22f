//go:build !linux && !darwin

package storm

import (
	"os"
	"syscall"
	"time"
)

// supported reports whether process storms work on this OS.
const supported = false

var processStart = time.Now()

// monoNow is only a per-process stand-in here: no child is ever started on
// this OS, so instants never need comparing across processes.
func monoNow() int64 { return int64(time.Since(processStart)) }

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) error { return errUnsupported() }

const (
	sigKill = syscall.Signal(9)
	sigStop = syscall.Signal(19)
	sigCont = syscall.Signal(18)
)

func exitSignal(ps *os.ProcessState) (syscall.Signal, bool) { return 0, false }

func execReplace(argv, env []string) error { return errUnsupported() }

func closeOnExec(fd uintptr) {}

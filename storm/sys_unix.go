//go:build linux || darwin

package storm

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// supported reports whether process storms work on this OS.
const supported = true

// monoNow returns CLOCK_MONOTONIC in nanoseconds. Unlike the monotonic reading
// inside time.Time, which is relative to the start of each process, this clock
// is shared by every process on the machine, so instants taken in different
// children can be compared.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("storm: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}

// sysProcAttr puts each child in a process group of its own, so that a kill
// of the group also reaches anything the child started, and a terminal's
// Ctrl-C goes to the parent only.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

const (
	sigKill = syscall.SIGKILL
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)

// exitSignal reports the signal that terminated the process, if any; none
// if Wait could not tell (ps is nil).
func exitSignal(ps *os.ProcessState) (syscall.Signal, bool) {
	if ps == nil {
		return 0, false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// execReplace replaces the current process image with argv (same pid).
func execReplace(argv, env []string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, env)
}

// closeOnExec marks fd so that it is not inherited across exec.
func closeOnExec(fd uintptr) { syscall.CloseOnExec(int(fd)) }

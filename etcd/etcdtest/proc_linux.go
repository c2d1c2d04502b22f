package etcdtest

// proc_linux.go: member processes die with their parent (Pdeathsig).
//
// May touch: nothing.

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

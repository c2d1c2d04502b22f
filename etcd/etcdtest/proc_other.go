//go:build !linux

package etcdtest

// proc_other.go: no parent-death signal outside Linux; a member exits when
// its stdin (a pipe from the parent) closes.
//
// May touch: nothing.

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

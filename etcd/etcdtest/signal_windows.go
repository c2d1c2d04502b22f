package etcdtest

// signal_windows.go: Windows has no SIGSTOP; pausing is unsupported there.
//
// May touch: nothing.

import (
	"errors"
	"os"
)

var errNoPause = errors.New("etcdtest: pausing a process is not supported on windows")

func pause(*os.Process) error  { return errNoPause }
func resume(*os.Process) error { return errNoPause }

// Pause is unsupported on Windows.
func Pause(p *os.Process) error { return pause(p) }

// Resume is unsupported on Windows.
func Resume(p *os.Process) error { return resume(p) }

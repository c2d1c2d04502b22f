package lock

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SystemHolders lists the flock holders and waiters of the file fi from
// /proc/locks, with their command lines. ok is false when /proc/locks
// cannot be read. It is exported for the root package's tests (the
// negative control of TestGateHolderNamed: the data lock alone names nobody).
func SystemHolders(fi os.FileInfo) (holders []Holder, ok bool) {
	dev, ino, idOK := fileID(fi)
	if !idOK {
		return nil, false
	}
	text, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil, false
	}
	holders = parseProcLocks(text, unix.Major(dev), unix.Minor(dev), ino)
	for i := range holders {
		if holders[i].PID > 0 {
			holders[i].Command = cmdline(holders[i].PID)
		}
	}
	return holders, true
}

// cmdline returns the command line of pid, arguments separated by spaces.
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	s := strings.TrimRight(string(b), "\x00")
	s = strings.ReplaceAll(s, "\x00", " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

package psbase

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// isMountRoot reports whether the open file is the root of a mount: a file
// bind-mounted over another path (statx's STATX_ATTR_MOUNT_ROOT, Linux 5.8+;
// false where the kernel does not say).
func isMountRoot(f *os.File) bool {
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS, &st); err != nil {
		return false
	}
	return st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

// unmapLeaked unmaps this process's mappings of the file fi whose start
// address live does not claim: what an abandoned bbolt handle leaves behind.
// It matters because a mapping holds the open file description, and with it
// bbolt's flock on the file, after the descriptor was closed: a leaked
// read-only mapping would keep every later writer out until the process
// exits.
func unmapLeaked(fi os.FileInfo, live func(uintptr) bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	want := fmt.Sprintf("%02x:%02x", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	ino := strconv.FormatUint(uint64(st.Ino), 10)
	for line := range strings.Lines(string(maps)) {
		// start-end perms offset dev inode path
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != ino || f[3] != want {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start || live(uintptr(start)) {
			continue
		}
		_, _, _ = unix.Syscall(unix.SYS_MUNMAP, uintptr(start), uintptr(end-start), 0)
	}
}

// warmSupported: reads may keep their handle (warm.go). Linux's page cache
// is what the kept mapping shows, whoever wrote the pages.
const warmSupported = true

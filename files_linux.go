package psbase

import (
	"os"

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

package lock

import (
	"strings"

	"golang.org/x/sys/unix"
)

// checkFS reports whether dir is on a network or FUSE file system, whose
// locks cannot be trusted (T12), by the statfs f_fstypename.
func checkFS(dir string) (name string, unsafe bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", false
	}
	name = unix.ByteSliceToString(st.Fstypename[:])
	switch {
	case name == "nfs", name == "smbfs", name == "afpfs", name == "webdav",
		name == "cifs", name == "ftp", name == "9p",
		strings.Contains(name, "fuse"):
		return name, true
	}
	return name, false
}

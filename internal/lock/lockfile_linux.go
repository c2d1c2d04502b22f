package lock

import "golang.org/x/sys/unix"

// lockCheckFS reports whether dir is on a file system in lockUnsafeFS.
func lockCheckFS(dir string) (name string, unsafe bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", false
	}
	name = lockFSName(uint32(st.Type))
	return name, name != ""
}

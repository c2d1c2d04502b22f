package lock

import "golang.org/x/sys/unix"

// checkFS reports whether dir is on a file system in unsafeFS.
func checkFS(dir string) (name string, unsafe bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", false
	}
	name = fsName(uint32(st.Type))
	return name, name != ""
}

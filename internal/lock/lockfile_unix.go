//go:build unix

package lock

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openNoFollow: never follow a final symbolic link, never block in open
// (the root package's files_unix.go has the same for the store's files).
const openNoFollow = unix.O_NOFOLLOW | unix.O_NONBLOCK

// fileOwner returns the owner and group of fi.
func fileOwner(fi os.FileInfo) (uid, gid int, ok bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid), true
	}
	return 0, 0, false
}

// recordOffset is where the holder record starts in the lock file.
const recordOffset = 0

// fileID returns the device and inode of fi.
func fileID(fi os.FileInfo) (dev, ino uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), true
}

// linkCount returns the number of names of fi; 0 once it has been removed.
func linkCount(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// isReadOnly: we may not create or write the file.
func isReadOnly(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)
}

// fileBusy: Unix removes open files.
func fileBusy(error) bool { return false }

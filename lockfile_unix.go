//go:build unix

package psbase

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// lockRecordOffset is where the holder record starts in the lock file.
const lockRecordOffset = 0

// lockFileID returns the device and inode of fi.
func lockFileID(fi os.FileInfo) (dev, ino uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), true
}

// lockLinkCount returns the number of names of fi; 0 once it has been removed.
func lockLinkCount(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// lockReadOnlyErr: we may not create or write the file.
func lockReadOnlyErr(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)
}

// lockFileBusy: Unix removes open files.
func lockFileBusy(error) bool { return false }

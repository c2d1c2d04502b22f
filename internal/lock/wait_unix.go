//go:build unix

package lock

import (
	"errors"

	"golang.org/x/sys/unix"
)

func isEINTR(err error) bool { return errors.Is(err, unix.EINTR) }

// isUnsupported: the file system cannot lock (T11). ENOLCK is NFS without
// a lock daemon; ENOSYS/ENOTSUP/EOPNOTSUPP file systems without flock.
func isUnsupported(err error) bool {
	return errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, errors.ErrUnsupported)
}

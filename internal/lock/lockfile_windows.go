package lock

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// openNoFollow: Windows has no O_NOFOLLOW; Go's open does not follow
// reparse points into another file for regular files, and FIFOs do not exist.
const openNoFollow = 0

// fileOwner: Windows files have no uid/gid.
func fileOwner(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

// recordOffset is where the holder record starts in the lock file. On
// Windows gofrs/flock locks byte 0 with LockFileEx, and byte-range locks are
// mandatory: nobody else may read or write the locked byte, so the record
// starts after it.
const recordOffset = 1

// fileID: the registry is keyed by the cleaned absolute path on Windows.
func fileID(os.FileInfo) (dev, ino uint64, ok bool) { return 0, 0, false }

// linkCount: a file open elsewhere cannot be removed on Windows (Go opens
// without FILE_SHARE_DELETE), so a locked file always has its name.
func linkCount(os.FileInfo) uint64 { return 1 }

func isReadOnly(err error) bool {
	return errors.Is(err, windows.ERROR_ACCESS_DENIED) ||
		errors.Is(err, windows.ERROR_WRITE_PROTECT) ||
		errors.Is(err, os.ErrPermission)
}

// checkFS reports whether dir is on a remote (SMB) drive, whose locks cannot
// be trusted (T12).
func checkFS(dir string) (name string, unsafe bool) {
	vol := filepath.VolumeName(dir)
	if strings.HasPrefix(vol, `\\`) && !strings.HasPrefix(vol, `\\?\`) && !strings.HasPrefix(vol, `\\.\`) {
		return "remote share " + vol, true
	}
	if strings.HasPrefix(strings.ToUpper(vol), `\\?\UNC\`) {
		return "remote share " + vol, true
	}
	root, err := windows.UTF16PtrFromString(vol + `\`)
	if err != nil {
		return "", false
	}
	if windows.GetDriveType(root) == windows.DRIVE_REMOTE {
		return "remote drive " + vol, true
	}
	return "", false
}

// fileBusy: the file is open elsewhere (Go opens files without
// FILE_SHARE_DELETE), so it cannot be removed.
func fileBusy(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_ACCESS_DENIED)
}

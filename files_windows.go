//go:build windows

package psbase

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// openNoFollow: Windows has no O_NOFOLLOW; Go's open does not follow
// reparse points into another file for regular files, and FIFOs do not exist.
const openNoFollow = 0

// fileLinks: Go does not report link counts on Windows.
func fileLinks(os.FileInfo) uint64 { return 1 }

// fileOwner: Windows files have no uid/gid.
func fileOwner(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

func isLoop(error) bool { return false }

// mayKeepOwner: Windows files have no uid/gid to keep.
func mayKeepOwner(string, os.FileInfo) error { return nil }

// keepOwner keeps the mode bits Windows has.
func keepOwner(f *os.File, fi os.FileInfo) error { return f.Chmod(fi.Mode().Perm()) }

func isNoSpace(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) || errors.Is(err, windows.ERROR_HANDLE_DISK_FULL)
}

func isReadOnlyFS(err error) bool { return errors.Is(err, windows.ERROR_WRITE_PROTECT) }

func isNotDir(err error) bool { return errors.Is(err, windows.ERROR_DIRECTORY) }

// dropFlock: reads are never warm off Linux (warmSupported), so bbolt's
// lock is never dropped here.
func dropFlock(*os.File) error { return nil }

//go:build unix

package psbase

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openNoFollow: never follow a final symbolic link, never block in open.
const openNoFollow = unix.O_NOFOLLOW | unix.O_NONBLOCK

// fileLinks returns the number of names of fi (0 once removed).
func fileLinks(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// fileOwner returns the owner and group of fi.
func fileOwner(fi os.FileInfo) (uid, gid int, ok bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid), true
	}
	return 0, 0, false
}

// isLoop: open with O_NOFOLLOW met a symbolic link (or a link loop).
func isLoop(err error) bool { return errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EMLINK) }

// mayKeepOwner refuses, before anything is written, a caller who could not
// give a replacement of the file fi its owner and group: only root can give
// a file away, and an owner only to a group it belongs to.
func mayKeepOwner(path string, fi os.FileInfo) error {
	uid, gid, ok := fileOwner(fi)
	euid := os.Geteuid()
	if !ok || euid == 0 {
		return nil
	}
	if euid != uid {
		return errorf(ErrReadOnly, "%s belongs to uid %d: only that user or root can replace it with a copy that keeps its owner", path, uid)
	}
	if gid == os.Getegid() {
		return nil
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if g == gid {
			return nil
		}
	}
	return errorf(ErrReadOnly, "%s belongs to group %d, which this user is not in: its copy could not keep that group", path, gid)
}

// keepOwner gives f (a replacement of the file fi) fi's owner, group and
// mode, before any data is written to it.
func keepOwner(f *os.File, fi os.FileInfo) error {
	uid, gid, ok := fileOwner(fi)
	if ok {
		if nfi, err := f.Stat(); err == nil {
			if nuid, ngid, _ := fileOwner(nfi); nuid != uid || ngid != gid {
				if err := f.Chown(uid, gid); err != nil {
					return errorf(ErrReadOnly, "cannot give %s the owner %d:%d of the store: %v", f.Name(), uid, gid, err)
				}
			}
		}
	}
	if err := f.Chmod(fi.Mode().Perm()); err != nil {
		return classifyIOError(err)
	}
	return nil
}

// isNoSpace: the disk, the quota or the inodes are exhausted; EFBIG is a
// file-size limit (RLIMIT_FSIZE, or the file system's maximum).
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.EFBIG)
}

func isReadOnlyFS(err error) bool { return errors.Is(err, unix.EROFS) }

func isNotDir(err error) bool { return errors.Is(err, unix.ENOTDIR) }

// dropFlock releases the flock bbolt took on f (warm.go, 4).
func dropFlock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_UN) }

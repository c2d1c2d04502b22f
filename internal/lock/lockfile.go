package lock

// May touch: <db>.lock and <db>.gate only: opened without following links, checked before use.

// lockfile.go: the lock and gate files themselves: created only beside a
// store (T22) with the configured mode (T3), opened without following links
// and checked to be single-named regular files of a trusted owner (T18,
// T19), re-checked after locking (T2); and the file systems whose locks
// cannot be trusted (T12).

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/gofrs/flock"
)

// prepare makes sure the lock file at path exists and returns its identity.
// An existing file must pass checkLockFile. A missing one is created only
// when the store exists or mayCreate (T22), with O_CREATE|O_EXCL (which
// never follows a link) and then chmod'ed to l.mode, so the umask cannot take
// away the group write bit that a store shared between users needs (T3);
// root gives it the store's owner, so that root running maintenance does not
// lock the owner out. It never truncates and never writes.
func (l *File) prepare(path string, mayCreate bool) (fileKey, error) {
	for range 10 {
		fi, err := os.Lstat(path)
		if l.FollowLinks {
			fi, err = os.Stat(path)
		}
		if err == nil {
			if err := l.checkLockFile(path, fi); err != nil {
				return fileKey{}, err
			}
			return keyOf(path, fi), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fileKey{}, l.openError(path, false, err)
		}
		dfi, err := os.Lstat(l.db)
		if errors.Is(err, fs.ErrNotExist) && !mayCreate {
			return fileKey{}, fmt.Errorf("%w: no store at %s", ErrNotExist, l.db)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|openNoFollow, l.mode)
		if err == nil {
			_ = f.Chmod(l.mode)
			if dfi != nil && os.Geteuid() == 0 {
				if uid, gid, ok := fileOwner(dfi); ok && uid != 0 {
					_ = f.Chown(uid, gid)
				}
			}
			_ = f.Close()
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return fileKey{}, l.openError(path, true, err)
		}
	}
	return fileKey{}, fmt.Errorf("lock file %s keeps disappearing (something deletes it as soon as it is created)", path)
}

// checkLockFile refuses (ErrUnsafePath) a lock or gate file that is not a
// regular file with one name, owned by the store's owner, the caller or root
// (T18, T19): psbase writes its holder record into the lock file, so a
// symbolic or hard link there would aim that write at another file, and a
// FIFO or device could block an open or a read. fi is from lstat or fstat.
func (l *File) checkLockFile(path string, fi os.FileInfo) error {
	if l.FollowLinks {
		return nil
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: lock file %s is a symbolic link; psbase never follows one there (remove it)", ErrUnsafePath, path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: lock file %s is not a regular file (%s); remove it", ErrUnsafePath, path, fi.Mode().Type())
	case linkCount(fi) > 1:
		return fmt.Errorf("%w: lock file %s has %d names (a hard link to another file?); remove it", ErrUnsafePath, path, linkCount(fi))
	}
	uid, _, ok := fileOwner(fi)
	if !ok || uid == 0 || uid == os.Geteuid() {
		return nil
	}
	owner := l.dbOwner.Load()
	if owner != int64(uid) {
		if dfi, err := os.Lstat(l.db); err == nil {
			if du, _, ok := fileOwner(dfi); ok {
				owner = int64(du)
				l.dbOwner.Store(owner)
			}
		}
	}
	if owner == int64(uid) {
		return nil
	}
	return fmt.Errorf("%w: lock file %s belongs to uid %d, neither the store's owner nor this user nor root; remove it", ErrUnsafePath, path, uid)
}

// openError classifies an error from creating (creating) or opening a lock
// file: no permission or a read-only file system wraps ErrReadOnly.
func (l *File) openError(path string, creating bool, err error) error {
	if isReadOnly(err) {
		if creating {
			return fmt.Errorf("%w: cannot create lock file %s: the directory is not writable (a store there can be read once its lock file exists, not created or written): %w",
				ErrReadOnly, path, err)
		}
		return fmt.Errorf("%w: lock file %s is not writable (writes need write access to the store's files): %w",
			ErrReadOnly, path, err)
	}
	return fmt.Errorf("lock file %s: %w", path, err)
}

// sameFile reports whether the file f has locked is still linked
// (nlink > 0 on fstat(fd)), and returns its identity. psbase removes lock
// files only by unlinking them (RemoveFiles), and an unlinked inode keeps
// nlink 0 forever, so a waiter that wakes up holding a removed file sees it
// here without a second lookup of the path; a newcomer that opened the
// recreated file sees a different identity than the in-process lock's key
// (the caller's want). One fstat instead of fstat+stat per acquisition keeps
// the hot path short. The same fstat shows what was opened: a file that
// fails checkLockFile is refused (ErrUnsafePath). gofrs' Locked() flags are
// not consulted (T5): the kernel holds the truth and we only ever hold a lock
// we just took.
func (l *File) sameFile(f *flock.Flock, path string) (bool, fileKey, error) {
	fdInfo, err := f.Stat() // fstat on the locked descriptor
	if err != nil {
		return false, fileKey{}, fmt.Errorf("lock file %s: %w", path, err)
	}
	if linkCount(fdInfo) == 0 {
		return false, fileKey{}, nil
	}
	if err := l.checkLockFile(path, fdInfo); err != nil {
		return false, fileKey{}, err
	}
	return true, keyOf(path, fdInfo), nil
}

// unsafeFS maps the Linux statfs f_type magic numbers of file systems whose locks
// cannot be trusted (T12) to their names (linux/magic.h and the file
// systems' sources). Network file systems can lose locks when the server or
// the lock daemon restarts, or fake them locally (NFS "local_lock", SMB
// "nobrl"); FUSE (sshfs, gocryptfs, virtiofs...) and 9p pass flock to a user
// space server or handle it locally only for this machine.
var unsafeFS = map[uint32]string{
	0x6969:     "nfs",
	0x517b:     "smb",
	0xff534d42: "cifs",
	0xfe534d42: "smb2",
	0x65735546: "fuse (incl. virtiofs)",
	0x01021997: "9p",
	0x00c36400: "ceph",
	0x5346414f: "afs",
	0x6b414653: "afs",
	0x73757245: "coda",
	0x564c:     "ncp",
	0x0bd00bd0: "lustre",
	0x13661366: "orangefs",
	0x786f4256: "vboxsf",
	0x47504653: "gpfs",
}

// fsName returns the name of an unsafe file system magic, or "" if it is
// not one.
func fsName(magic uint32) string { return unsafeFS[magic] }

package psbase

// files.go: how psbase opens, creates and names the store's own files, so
// that a link, a FIFO or a foreign file where the database should be can
// never redirect a write, hang an open or fork the store.
//
// May touch: the database file and the temporary files beside it
// (<db>.creating, <db>.compact), and the directory that holds them (fsync).

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// The names of the files beside the database (see FORMAT.md).
const (
	suffixLock     = ".lock"     // the data lock
	suffixGate     = ".gate"     // the turnstile
	suffixCompact  = ".compact"  // Cleanup's copy, renamed over the database
	suffixCreating = ".creating" // Create's new store, renamed (or linked) into place
	suffixQueue    = ".gcq"      // the group-commit queue (gcq_linux.go)
)

var errIsDir = errors.New("is a directory, not a store file")

// resolvePath returns the absolute path of the real database file: a
// symbolic link to a store is followed once, here, so that every later
// operation — the lock files beside it, Cleanup's rename, Destroy — works
// on the file itself, never on the link (renaming over a link would fork the
// store). A path that does not exist yet resolves through its directory.
func resolvePath(path string) (string, error) {
	if path == "" {
		return "", errorf(ErrNotExist, "empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	switch {
	case err == nil:
		return real, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return "", classifyPathError(abs, err)
	}
	if fi, lerr := os.Lstat(abs); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("%w: %s is a symbolic link to a file that does not exist", ErrUnsafePath, abs)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", classifyPathError(filepath.Dir(abs), err)
	}
	return filepath.Join(dir, filepath.Base(abs)), nil
}

// classifyPathError explains why a path cannot be used.
func classifyPathError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %s: a component of the path is a file, not a directory", ErrNotExist, path)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s: %w", ErrNotExist, path, err)
	case isLoop(err):
		return fmt.Errorf("%w: %s: too many levels of symbolic links", ErrUnsafePath, path)
	}
	return classifyIOError(err)
}

// openStoreFile opens the database file for bbolt (its Options.OpenFile
// hook): never following a link (O_NOFOLLOW), never blocking (O_NONBLOCK: a
// FIFO put where the store was must not hang the open; for a regular file
// the flag changes nothing, and it spares Go's own non-blocking set-up), and
// refusing anything but a regular file with exactly one name: a second hard
// link would be a second path with its own lock files, so two processes could
// write at once, and Cleanup's rename would fork the store. An empty file is
// refused too: bbolt would initialise it, and a store destroyed by another
// process must not come back empty.
func openStoreFile(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag&^os.O_CREATE|openNoFollow, 0)
	if err != nil {
		if isLoop(err) {
			return nil, fmt.Errorf("%w: %s was replaced by a symbolic link", ErrUnsafePath, path)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s is gone (destroyed?)", ErrNotExist, path)
		}
		return nil, classifyPathError(path, err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkStoreFile(path, f, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkStoreFile refuses a database file that is not a single-named regular
// file, or is empty. The store's lock is held.
func checkStoreFile(path string, f *os.File, fi os.FileInfo) error {
	if fileLinks(fi) == 2 && fi.Mode().IsRegular() && leftoverCreating(path, fi) {
		fi = nil // re-read below
		if st, err := f.Stat(); err == nil {
			fi = st
		} else {
			return classifyIOError(err)
		}
	}
	switch {
	case fi.IsDir():
		return fmt.Errorf("%w: %s %w", ErrNotExist, path, errIsDir)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s is not a regular file (%s)", ErrUnsafePath, path, fi.Mode().Type())
	case fileLinks(fi) > 1:
		return fmt.Errorf("%w: %s has %d names (hard links); a store must have one, or two processes could write it at once — remove the other names", ErrUnsafePath, path, fileLinks(fi))
	case fi.Size() == 0:
		return errorf(ErrCorrupt, "not a psbase store: %s is empty", path)
	}
	if f != nil && isMountRoot(f) {
		return fmt.Errorf("%w: %s is a mount point (a bind-mounted file): its lock files would differ from the original's", ErrUnsafePath, path)
	}
	return nil
}

// leftoverCreating removes the second name of the store's file when it is
// <db>.creating: Create links its finished file in place and then removes
// that name, so a process killed between the two leaves both. Create holds
// the exclusive lock across both steps, and the caller holds the lock, so
// such a name is a leftover, never a Create in progress; the store itself
// is complete. It reports whether it removed the name.
func leftoverCreating(path string, fi os.FileInfo) bool {
	tmp := path + suffixCreating
	ti, err := os.Lstat(tmp)
	if err != nil || !os.SameFile(fi, ti) {
		return false
	}
	err = os.Remove(tmp)
	return err == nil || errors.Is(err, fs.ErrNotExist)
}

// sameFile reports whether the open file f is still the file at path (same
// device and inode, still linked): false once it was renamed over or removed.
func sameFile(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil || fileLinks(fi) == 0 {
		return false
	}
	pi, err := os.Lstat(path)
	return err == nil && os.SameFile(fi, pi)
}

// syncDir fsyncs a directory so a created or renamed entry is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return classifyIOError(err)
	}
	defer d.Close()
	// Some file systems (and Windows) cannot sync a directory; the rename
	// is then as durable as the platform makes it.
	if err := d.Sync(); err != nil && runtime.GOOS != "windows" &&
		!errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return classifyIOError(err)
	}
	return nil
}

// stillTheStore reports, with an error wrapping ErrUnknownOutcome, that f (the
// database file a transaction committed into) is no longer the file at path:
// it was unlinked or replaced while the transaction ran.
func stillTheStore(path string, f *os.File) error {
	if f == nil {
		return nil
	}
	fi, err := f.Stat()
	if err == nil && fileLinks(fi) > 0 {
		var pfi os.FileInfo
		if pfi, err = os.Lstat(path); err == nil && os.SameFile(fi, pfi) {
			return nil
		}
	}
	return fmt.Errorf("%w: the write was committed into a file that is no longer the store at %s (it was replaced or removed meanwhile: a Cleanup by a process whose lock file had been deleted?); it may be lost: check before retrying", ErrUnknownOutcome, path)
}

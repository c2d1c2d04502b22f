package lock

// May touch: <db>.gate and <db>.lock, through gofrs/flock descriptors.

// wait.go: the kernel waits: a flock on a new open file description, a
// non-blocking try first, then a blocking wait that ctx can abandon (T9,
// T10), with flock's errors classified (T11).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/gofrs/flock"
)

// flockError classifies an error from flock itself (T11). EWOULDBLOCK never gets
// here (it is contention, handled by the callers) and EINTR is retried.
func flockError(path string, err error) error {
	if isUnsupported(err) {
		return fmt.Errorf("%w: flock on %s: %w", ErrUnsupportedFS, path, err)
	}
	return fmt.Errorf("flock %s: %w", path, err)
}

// lockFile locks path on a new open file description: first a non-blocking
// try, then, when contended, a blocking kernel wait (T9) in a helper
// goroutine so that ctx can abandon it (T10). After locking it re-checks that
// the locked file is still the one at path (and, when want is not nil, the
// file the in-process lock is keyed by), FreeBSD flopen(3) style (T2).
// readOnlyOK allows falling back to an O_RDONLY descriptor when the file
// exists but is not writable by us.
func (l *File) lockFile(ctx context.Context, pl *procLock, path string, want *fileKey, excl, readOnlyOK bool) (*flock.Flock, error) {
	// No O_CREATE: prepare made the file; O_NOFOLLOW|O_NONBLOCK: a link or
	// FIFO put there since is refused below, never followed or waited on.
	flags := os.O_RDWR | openNoFollow
	if l.FollowLinks {
		flags = os.O_RDWR | os.O_CREATE
	}
	for {
		f := flock.New(path, flock.SetFlag(flags), flock.SetPermissions(l.mode))
		ok, err := tryLock(f, excl)
		if err != nil && readOnlyOK && flags&os.O_RDWR != 0 && isReadOnly(err) {
			flags = os.O_RDONLY | openNoFollow
			if l.FollowLinks {
				flags = os.O_RDONLY
			}
			continue
		}
		if err == nil && !ok && noWait(ctx) {
			return nil, errBusy
		}
		if err == nil && !ok {
			err = l.waitLock(ctx, pl, f, excl)
			if err != nil && !isOpenError(err) {
				return nil, err
			}
		}
		if err != nil {
			switch {
			case !isOpenError(err):
				return nil, flockError(path, err)
			case errors.Is(err, fs.ErrNotExist):
				// Removed since prepare (Destroy, a tmp cleaner): start over.
				return nil, errStale
			}
			// A link, a directory... put there since prepare looked.
			if fi, lerr := os.Lstat(path); lerr == nil {
				if cerr := l.checkLockFile(path, fi); cerr != nil {
					return nil, cerr
				}
			}
			return nil, l.openError(path, false, err)
		}
		if l.noRecheck {
			return f, nil
		}
		same, key, err := l.sameFile(f, path)
		if err != nil {
			_ = f.Unlock()
			return nil, err
		}
		if !same || (want != nil && key != *want) {
			_ = f.Unlock()
			if want != nil {
				// Re-key the in-process lock too: leave and start over.
				return nil, errStale
			}
			continue
		}
		return f, nil
	}
}

// isOpenError reports an error of opening the file (not of locking it).
func isOpenError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Op == "open"
}

// tryLock is one non-blocking attempt; EWOULDBLOCK is (false, nil).
// gofrs/flock opens the file in TryLock and closes it again on failure.
func tryLock(f *flock.Flock, excl bool) (bool, error) {
	for {
		var ok bool
		var err error
		if excl {
			ok, err = f.TryLock()
		} else {
			ok, err = f.TryRLock()
		}
		if isEINTR(err) {
			continue
		}
		return ok, err
	}
}

// blockingLock waits in the kernel until f is locked. Blocked flock waiters are
// woken in arrival order, unlike polling (T9).
func blockingLock(f *flock.Flock, excl bool) error {
	for {
		var err error
		if excl {
			err = f.Lock()
		} else {
			err = f.RLock()
		}
		if !isEINTR(err) {
			return err
		}
	}
}

// waitLock blocks until f is locked or ctx is done. A blocked flock cannot be
// interrupted (SA_RESTART; closing the descriptor does not wake it), so the
// wait runs in a helper goroutine. At most one goroutine per lock file and
// process waits in the kernel: the others wait for pl's kernel-wait token in
// Go, where ctx can stop them, and do not pin an OS thread each.
func (l *File) waitLock(ctx context.Context, pl *procLock, f *flock.Flock, excl bool) error {
	if err := pl.waitToken(ctx); err != nil {
		return err
	}
	// The helper may outlive this call: keep pl registered (and with it the
	// token) until it is done.
	procLocks.ref(pl)
	res := make(chan error) // unbuffered: a send succeeds only if we still listen
	go func() {
		defer procLocks.put(pl)
		defer pl.releaseToken()
		err := blockingLock(f, excl)
		select {
		case res <- err:
		case <-ctx.Done():
			// Abandoned: nobody will use this lock. Drop it at once.
			if err == nil {
				_ = f.Unlock()
			}
		}
	}()
	select {
	case err := <-res:
		if err != nil && !isOpenError(err) {
			return flockError(f.Path(), err)
		}
		return err // an open error is the caller's to classify
	case <-ctx.Done():
		return ctx.Err()
	}
}

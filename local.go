package psbase

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

var errIsDir = errors.New("is a directory, not a store file")

// statStore reports ErrNotExist for a missing path or a directory.
func statStore(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: no file at %s", ErrNotExist, path)
	case err != nil:
		return classifyIOError(err)
	case fi.IsDir():
		return fmt.Errorf("%w: %w", ErrNotExist, errIsDir)
	}
	return nil
}

// create writes a new store file; the exclusive lock is held.
func (s *Store) create(sch *schema, overwrite bool) error {
	err := statStore(s.path)
	switch {
	case errors.Is(err, errIsDir):
		return err
	case err == nil:
		fi, _ := os.Stat(s.path)
		if fi != nil && fi.Size() > 0 && !overwrite {
			return fmt.Errorf("%w: %s (use WithOverwrite to replace it)", ErrExists, s.path)
		}
		if err := os.Remove(s.path); err != nil {
			return classifyIOError(err)
		}
	case !errors.Is(err, ErrNotExist):
		return err
	}
	db, err := bolt.Open(s.path, s.cfg.fileMode, &bolt.Options{Timeout: s.cfg.boltTimeout, NoSync: s.cfg.noSync})
	if err != nil {
		_ = os.Remove(s.path)
		return classifyIOError(err)
	}
	err = db.Update(func(btx *bolt.Tx) error { return initFormat(btx, sch) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(s.path)
		return classifyIOError(err)
	}
	return syncDir(filepath.Dir(s.path))
}

// verify checks that the file is a psbase store; the lock is held.
func (s *Store) verify(readOnly bool) error {
	db, err := s.openBolt(!readOnly)
	if err != nil {
		return err
	}
	defer db.Close()
	return withFaultGuard(func() error {
		return db.View(func(btx *bolt.Tx) error {
			if err := checkFormat(btx); err != nil {
				return err
			}
			_, err := s.loadSchema(btx.Bucket(bucketMeta))
			return err
		})
	})
}

// openBolt opens the database file for one transaction. The file must exist
// and not be empty: bbolt would silently create or initialize it, and a
// store destroyed by another process must not come back empty.
func (s *Store) openBolt(write bool) (*bolt.DB, error) {
	opts := &bolt.Options{
		Timeout:  s.cfg.boltTimeout,
		ReadOnly: !write,
		NoSync:   s.cfg.noSync,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag&^os.O_CREATE, mode)
			if err != nil || !write {
				// Read-only: bbolt cannot initialize the file (its write
				// fails); classifyOpenError tells an empty file then.
				return f, err
			}
			fi, err := f.Stat()
			if err == nil && fi.IsDir() {
				err = errIsDir
			}
			if err == nil && fi.Size() == 0 {
				err = errorf(ErrCorrupt, "not a psbase store: the file is empty")
			}
			if err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		},
	}
	db, err := bolt.Open(s.path, s.cfg.fileMode, opts)
	if err != nil {
		if fi, serr := os.Stat(s.path); serr == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			return nil, errorf(ErrCorrupt, "not a psbase store: the file is empty")
		}
		return nil, s.classifyOpenError(err)
	}
	return db, nil
}

func (s *Store) classifyOpenError(err error) error {
	switch {
	case errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, errIsDir):
		return fmt.Errorf("%w: %w", ErrNotExist, errIsDir)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s is gone (destroyed?)", ErrNotExist, s.path)
	case isBoltTimeout(err):
		return fmt.Errorf("%w: bbolt's own file lock on %s is held by a program that does not use psbase's lock", ErrLockTimeout, s.path)
	case isBoltFormatError(err):
		return errorf(ErrCorrupt, "not a psbase store: %v", err)
	}
	return classifyIOError(err)
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

func isPermission(err error) bool { return errors.Is(err, fs.ErrPermission) }

func isReadOnlyFS(err error) bool { return errors.Is(err, syscall.EROFS) }

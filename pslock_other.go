//go:build !unix && !windows

package psbase

import (
	"errors"
	"os"
)

// On platforms without file locks gofrs/flock returns errors.ErrUnsupported,
// which acquire reports as ErrUnsupportedFS.

const lockRecordOffset = 0

func lockFileID(os.FileInfo) (dev, ino uint64, ok bool) { return 0, 0, false }

func lockLinkCount(os.FileInfo) uint64 { return 1 }

func lockIsEINTR(error) bool { return false }

func lockUnsupportedErr(err error) bool { return errors.Is(err, errors.ErrUnsupported) }

func lockReadOnlyErr(err error) bool { return errors.Is(err, os.ErrPermission) }

func lockCheckFS(dir string) (name string, unsafe bool) { return "", false }

func lockSystemHolders(os.FileInfo) ([]LockHolder, bool) { return nil, false }

func lockFileBusy(error) bool { return false }

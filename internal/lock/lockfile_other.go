//go:build !unix && !windows

package lock

import (
	"errors"
	"os"
)

const openNoFollow = 0

func fileOwner(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

const lockRecordOffset = 0

func lockFileID(os.FileInfo) (dev, ino uint64, ok bool) { return 0, 0, false }

func lockLinkCount(os.FileInfo) uint64 { return 1 }

func lockReadOnlyErr(err error) bool { return errors.Is(err, os.ErrPermission) }

func lockCheckFS(dir string) (name string, unsafe bool) { return "", false }

func lockFileBusy(error) bool { return false }

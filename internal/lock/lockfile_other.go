//go:build !unix && !windows

package lock

import (
	"errors"
	"os"
)

const openNoFollow = 0

func fileOwner(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

const recordOffset = 0

func fileID(os.FileInfo) (dev, ino uint64, ok bool) { return 0, 0, false }

func linkCount(os.FileInfo) uint64 { return 1 }

func isReadOnly(err error) bool { return errors.Is(err, os.ErrPermission) }

func checkFS(dir string) (name string, unsafe bool) { return "", false }

func fileBusy(error) bool { return false }

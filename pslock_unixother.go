//go:build unix && !linux && !darwin

package psbase

import "os"

// lockCheckFS: no file system detection on this platform.
func lockCheckFS(dir string) (name string, unsafe bool) { return "", false }

// lockSystemHolders: this platform does not list flock holders.
func lockSystemHolders(os.FileInfo) ([]LockHolder, bool) { return nil, false }

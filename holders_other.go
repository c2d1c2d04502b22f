//go:build !linux

package psbase

import "os"

// lockSystemHolders: only Linux lists flock holders (/proc/locks); macOS,
// Windows and the other platforms do not.
func lockSystemHolders(os.FileInfo) ([]LockHolder, bool) { return nil, false }

//go:build !linux

package lock

import "os"

// SystemHolders: only Linux lists flock holders (/proc/locks); macOS,
// Windows and the other platforms do not.
func SystemHolders(os.FileInfo) ([]Holder, bool) { return nil, false }

//go:build !linux

package psbase

import "os"

// isMountRoot: only Linux tells whether a file is a mount root.
func isMountRoot(*os.File) bool { return false }

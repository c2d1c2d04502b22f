//go:build !linux

package psbase

import "os"

// isMountRoot: only Linux tells whether a file is a mount root.
func isMountRoot(*os.File) bool { return false }

// unmapLeaked: only Linux lists a process's mappings; elsewhere an abandoned
// handle keeps its mapping, and bbolt's flock with it, until the process exits.
func unmapLeaked(os.FileInfo, func(uintptr) bool) {}

// warmSupported: Linux first; elsewhere every read opens the file anew.
const warmSupported = false

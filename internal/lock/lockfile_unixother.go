//go:build unix && !linux && !darwin

package lock

// checkFS: no file system detection on this platform.
func checkFS(dir string) (name string, unsafe bool) { return "", false }

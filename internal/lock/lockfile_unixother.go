//go:build unix && !linux && !darwin

package lock

// lockCheckFS: no file system detection on this platform.
func lockCheckFS(dir string) (name string, unsafe bool) { return "", false }

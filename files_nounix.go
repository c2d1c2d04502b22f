//go:build !unix && !windows

package psbase

import "os"

const openNoFollow = 0

func fileLinks(os.FileInfo) uint64 { return 1 }

func fileOwner(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

func isLoop(error) bool { return false }

func mayKeepOwner(string, os.FileInfo) error { return nil }

func keepOwner(f *os.File, fi os.FileInfo) error { return f.Chmod(fi.Mode().Perm()) }

func isNoSpace(error) bool { return false }

func isReadOnlyFS(error) bool { return false }

func isNotDir(error) bool { return false }

func dropFlock(*os.File) error { return nil }

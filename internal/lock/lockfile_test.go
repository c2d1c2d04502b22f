package lock

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// 8b. New: no file created, missing directory, unsupported FS table.
func TestNew(t *testing.T) {
	dir := t.TempDir()
	l, err := New(filepath.Join(dir, "n.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("New created files: %v", ents)
	}
	if l.proto != defaultProtocol || l.mode != 0o644 {
		t.Fatalf("defaults: %v %v", l.proto, l.mode)
	}
	_, err = New(filepath.Join(dir, "nope", "n.db"), Config{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing directory: %v, want fs.ErrNotExist", err)
	}
	// The configured mode is applied in spite of the umask.
	l, err = New(filepath.Join(dir, "m.db"), Config{FileMode: 0o664})
	if err != nil {
		t.Fatal(err)
	}
	release, _, err := l.acquire(context.Background(), true, "create")
	if err != nil {
		t.Fatal(err)
	}
	release()
	for _, p := range []string{l.path, l.gatePath} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o664 {
			t.Fatalf("%s: %v %v, want mode 0664", p, fi.Mode(), err)
		}
	}
	if err := l.RemoveFiles(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("RemoveFiles left %v", ents)
	}
}

func TestUnsupportedFSTable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("statfs magic numbers are Linux")
	}
	for _, c := range []struct {
		magic uint32
		want  string
	}{
		{0x6969, "nfs"}, {0xff534d42, "cifs"}, {0xfe534d42, "smb2"}, {0x517b, "smb"},
		{0x65735546, "fuse (incl. virtiofs)"}, {0x01021997, "9p"}, {0x00c36400, "ceph"},
		{0xef53, ""}, {0x01021994, ""}, {0x58465342, ""}, {0x9123683e, ""}, {0x794c7630, ""}, // ext4, tmpfs, xfs, btrfs, overlayfs
	} {
		if got := fsName(c.magic); got != c.want {
			t.Errorf("fsName(%#x) = %q, want %q", c.magic, got, c.want)
		}
	}
	// The test's own temp dir must be accepted.
	if name, bad := checkFS(t.TempDir()); bad {
		t.Skipf("temp dir is on %s", name)
	}
}

//go:build unix

package lock

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// 8a. Unwritable directory and read-only lock file, as an unprivileged user.
// Root ignores permissions, so when running as root the check runs in a
// child process with the credentials of "nobody".
func TestUnwritable(t *testing.T) {
	// A world-readable copy of the test binary in a world-readable directory.
	base, err := os.MkdirTemp("", "psbase-lock-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	roDir := filepath.Join(base, "ro")
	if err := os.Mkdir(roDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// An existing lock file we cannot write: shared works, exclusive not.
	existing := filepath.Join(roDir, "existing.db")
	if err := os.WriteFile(existing+".lock", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// (and no gate file, as if only plain-protocol writers had been here)
	missing := filepath.Join(roDir, "missing.db")
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(roDir, 0o555); err != nil {
		t.Fatal(err)
	}
	run := func(db string) map[string]string {
		cmd := command(t, helper{mode: "perm", db: db})
		if os.Geteuid() == 0 {
			exe := filepath.Join(base, "psbase-lock.test")
			if _, err := os.Stat(exe); err != nil && os.Link(os.Args[0], exe) != nil {
				b, err := os.ReadFile(os.Args[0])
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(exe, b, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd.Path, cmd.Args[0] = exe, exe
			cmd.Dir = base
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		cmd.Stderr = nil
		out, err := cmd.CombinedOutput()
		if err != nil {
			if os.Geteuid() == 0 {
				t.Skipf("cannot run a child as uid 65534 to test permissions as root: %v: %s", err, out)
			}
			t.Fatalf("%v: %s", err, out)
		}
		res := map[string]string{}
		for line := range strings.Lines(string(out)) {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "lockresult "); ok {
				k, v, _ := strings.Cut(s, " ")
				res[k] = v
			}
		}
		return res
	}
	r := run(missing)
	t.Logf("unwritable dir, no lock file: %v", r)
	for _, k := range []string{"shared", "exclusive"} {
		if !strings.HasPrefix(r[k], "err readonly=true permission=true") {
			t.Errorf("%s acquisition in an unwritable directory: %q, want ErrReadOnly and fs.ErrPermission", k, r[k])
		}
	}
	r = run(existing)
	t.Logf("read-only lock file: %v", r)
	if r["shared"] != "ok" {
		t.Errorf("shared acquisition of a read-only lock file: %q, want ok", r["shared"])
	}
	if !strings.HasPrefix(r["exclusive"], "err readonly=true permission=true") {
		t.Errorf("exclusive acquisition of a read-only lock file: %q, want ErrReadOnly", r["exclusive"])
	}
	if _, err := os.Stat(missing + ".lock"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a lock file appeared: %v", err)
	}
}

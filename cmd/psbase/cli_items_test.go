package main

// cli_items_test.go: --version from build info, create --mode, stats'
// file_size against os.Stat, and negative incr deltas.
//
// May touch: stores in t.TempDir().

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// call runs psbase in-process and fails the test on another exit code.
func call(t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if got := run(args, strings.NewReader(""), &out, &errb); got != want {
		t.Fatalf("psbase %v: exit %d, want %d; stderr: %s", args, got, want, errb.String())
	}
	return out.String(), errb.String()
}

// TestVersionFromBuildInfo: --version prints what the toolchain recorded,
// nothing hard-coded. The negative control is another build info: it
// gives another string, so the output follows the build info.
func TestVersionFromBuildInfo(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("no build info in this test binary")
	}
	out, _ := call(t, 0, "--version")
	if want := "psbase " + versionOf(bi) + "\n"; out != want {
		t.Fatalf("--version printed %q, want %q", out, want)
	}
	if !strings.Contains(out, runtime.Version()) {
		t.Fatalf("--version %q does not name the Go version %s", out, runtime.Version())
	}
	tagged := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v0.1.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"},
			{Key: "vcs.time", Value: "2026-12-01T00:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if got, want := versionOf(tagged), "v0.1.0 (0123456789ab 2026-12-01T00:00:00Z, modified) go1.99"; got != want {
		t.Fatalf("versionOf(tagged) = %q, want %q", got, want)
	}
	if got := versionOf(&debug.BuildInfo{GoVersion: "go1.99"}); got != "(devel) go1.99" || got == versionOf(tagged) {
		t.Fatalf("versionOf(untagged) = %q", got)
	}
}

// TestCreateMode: --mode gives the store and its lock files exactly that
// mode, whatever the umask. The negative control is a create without
// --mode: its files do not have the group's write bit (0644 by default),
// so the check tells the two apart.
func TestCreateMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no Unix permission bits")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "shared.db")
	_, stderr := call(t, 0, "create", "--mode", "0660", db, "n:int")
	if !strings.Contains(stderr, "mode 0660") {
		t.Fatalf("create --mode did not say the mode: %q", stderr)
	}
	for _, p := range []string{db, db + ".lock", db + ".gate"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o660 {
			t.Errorf("%s: mode %04o, want 0660", filepath.Base(p), fi.Mode().Perm())
		}
	}
	call(t, 0, "insert", db, "n=1")
	if fi, _ := os.Stat(db); fi.Mode().Perm() != 0o660 {
		t.Errorf("after an insert: mode %04o, want 0660", fi.Mode().Perm())
	}
	plain := filepath.Join(dir, "plain.db")
	call(t, 0, "create", plain, "n:int")
	if fi, _ := os.Stat(plain); fi.Mode().Perm() == 0o660 {
		t.Fatal("negative control: a create without --mode also made 0660; the test proves nothing")
	}
	for _, bad := range []string{"0999", "rw", "01777", "0066"} {
		call(t, exitUsage, "create", "--mode", bad, filepath.Join(dir, "bad.db"), "n:int")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.db")); err == nil {
		t.Fatal("a refused --mode created the store")
	}
}

// TestStatsFileSize: stats' file_size is the file's size as os.Stat sees
// it, on a new store and after it grew (a figure that did not follow the
// file, such as a page count or the size at open, would differ the second
// time).
func TestStatsFileSize(t *testing.T) {
	db := filepath.Join(t.TempDir(), "s.db")
	call(t, 0, "create", db, "s:string")
	check := func() int64 {
		t.Helper()
		out, _ := call(t, 0, "stats", "--json", db)
		var st struct {
			FileSize int64 `json:"file_size"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("stats --json: %v: %q", err, out)
		}
		fi, err := os.Stat(db)
		if err != nil {
			t.Fatal(err)
		}
		if st.FileSize != fi.Size() {
			t.Fatalf("stats file_size %d, os.Stat size %d", st.FileSize, fi.Size())
		}
		return st.FileSize
	}
	before := check()
	var in strings.Builder
	big := strings.Repeat("x", 4000)
	for range 200 {
		in.WriteString(`{"s":"` + big + `"}` + "\n")
	}
	var out, errb bytes.Buffer
	if code := run([]string{"import", db}, strings.NewReader(in.String()), &out, &errb); code != 0 {
		t.Fatalf("import: %d %s", code, errb.String())
	}
	if after := check(); after <= before {
		t.Fatalf("the file did not grow (%d -> %d): the test shows nothing", before, after)
	}
}

// TestIncrNegativeDelta: "incr DB ID FIELD -1" subtracts, with flags
// before or after it; "--" works too; other misplaced negative numbers get
// a hint about "--" instead of a bare "unknown shorthand flag".
func TestIncrNegativeDelta(t *testing.T) {
	db := filepath.Join(t.TempDir(), "c.db")
	call(t, 0, "create", db, "n:int", "x:float")
	call(t, 0, "insert", db, "n=10")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"incr", db, "1", "n", "-1"}, "9\n"},
		{[]string{"incr", db, "1", "n", "-2", "--timeout", "5s"}, "7\n"},
		{[]string{"--timeout", "5s", "incr", db, "1", "n", "-3"}, "4\n"},
		{[]string{"incr", db, "1", "n", "--", "-4"}, "0\n"},
		{[]string{"incr", db, "1", "x", "-0.5"}, "-0.5\n"},
		{[]string{"incr", db, "1", "n", "5"}, "5\n"},
	} {
		if out, _ := call(t, 0, tc.args...); out != tc.want {
			t.Errorf("psbase %v printed %q, want %q", tc.args, out, tc.want)
		}
	}
	_, stderr := call(t, exitUsage, "insert", db, "n=1", "-7")
	if !strings.Contains(stderr, "put -- before it") {
		t.Errorf("no hint about -- for a negative word: %q", stderr)
	}
	// A negative ID is not a delta: still refused.
	call(t, exitUsage, "incr", db, "-1", "n")
}

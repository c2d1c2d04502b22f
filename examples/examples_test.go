package examples

// The examples are run as what they are, programs: TestMain builds them once
// into a temporary directory, and each test runs one with a small storm and
// reads its output and exit status.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

var binDir string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
			return m.Run() // each test skips: storms need Linux or macOS
		}
		dir, err := os.MkdirTemp("", "psbase-examples-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer os.RemoveAll(dir)
		build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./counter", "./metrics", "./upsert", "./buzhug")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			return 2
		}
		binDir = dir
		return m.Run()
	}())
}

// run runs example name with args and returns its output; it fails the test
// unless the program exits 0.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	if binDir == "" {
		t.Skip("process storms need Linux or macOS")
	}
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s %s:\n%s", name, strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out)
}

// atoi returns the integer of the first submatch of re in s.
func atoi(t *testing.T, re, s string) int {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %q in the output", re)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCounter(t *testing.T) {
	// The locked variant must be exact every time; the torn one (the
	// negative control) must lose updates, which depends on timing: one
	// run of three is enough.
	for try := 1; ; try++ {
		out := run(t, "counter", "-n", "20", "-k", "10")
		if !strings.Contains(out, "counter = 200 (expected 200), 0 lost, check ok") {
			t.Fatal("the locked counter is not exact")
		}
		lost := atoi(t, `without the lock.* (\d+) lost`, out)
		if lost > 0 {
			break
		}
		if try == 3 {
			t.Fatal("the torn variant lost no update in 3 runs: the storm does not race")
		}
	}
}

func TestMetrics(t *testing.T) {
	out := run(t, "metrics", "-ramp", "5,30")
	for _, n := range []int{5, 30} {
		// processes, failures, rows present
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^\s+%d\s+0\s+%d\s`, n, n)).MatchString(out) {
			t.Errorf("the step of %d processes did not give 0 failures and %d rows", n, n)
		}
	}
	if atoi(t, `by status: ok (\d+)`, out)+atoi(t, `by status: .*failed (\d+)`, out) != 30 {
		t.Error("the counts by status do not add up to 30")
	}
}

func TestUpsert(t *testing.T) {
	out := run(t, "upsert", "-n", "10", "-ids", "3")
	// Negative control: check-then-insert in separate calls duplicates.
	if atoi(t, `separate calls: +(\d+) records`, out) <= 3 {
		t.Error("check-then-insert made no duplicate: the storm does not race")
	}
	if !regexp.MustCompile(`Upsert on a unique index: +3 records for 3 ids \(0 duplicates, up to 1 per id\), 0 importers failed`).MatchString(out) {
		t.Error("Upsert is not exact")
	}
}

func TestBuzhug(t *testing.T) {
	out := run(t, "buzhug", "-n", "30")
	if !strings.Contains(out, "invariant holds") {
		t.Error("no \"invariant holds\" in the output")
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain makes this test binary act as the psbase command (and two test
// helpers) when the scripts run it under those names; storms re-execute it
// as their launcher, which main handles first thing.
func TestMain(m *testing.M) {
	// The etcd test cluster's members are this binary too (etcd_test.go),
	// and so are the CLI and the lock holder those tests run.
	etcdtest.Main()
	etcdRoles()
	testscript.Main(m, map[string]func(){
		"psbase":          main,
		"psbase-holdlock": holdLockMain,
	})
}

// holdLockMain (psbase-holdlock DB FILE RELEASE) takes the store's
// exclusive lock, writes FILE, and holds the lock until a file named RELEASE
// exists (a script creates it when it is done with the lock: an event, not a
// duration that a loaded machine can outrun). Two minutes without RELEASE
// end it anyway, so a failed script leaves no holder behind.
func holdLockMain() {
	if len(os.Args) != 4 {
		os.Stderr.WriteString("usage: psbase-holdlock DB FILE RELEASE\n")
		os.Exit(2)
	}
	ctx := context.Background()
	s, err := psbase.Open(ctx, os.Args[1])
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	tx, err := s.Begin(ctx, true)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.WriteFile(os.Args[2], []byte("locked\n"), 0o644)
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(os.Args[3]); err == nil {
			break
		}
	}
	tx.Rollback()
	os.Exit(0)
}

// indexesWork reports whether the library's secondary indexes are built
// (they land in parallel with this command; scripts that need them use the
// [indexes] condition).
func indexesWork(dir string) bool {
	ctx := context.Background()
	s, err := psbase.Create(ctx, filepath.Join(dir, "probe.db"), []psbase.Field{{Name: "k", Type: psbase.String}}, psbase.WithOverwrite())
	if err != nil {
		return false
	}
	return s.CreateIndex(ctx, "k", psbase.Unique()) == nil
}

func TestScripts(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the scripts use /bin/sh")
	}
	probeDir := t.TempDir()
	idx := indexesWork(probeDir)
	if !idx {
		t.Log("psbase indexes are not built yet: scripts under [indexes] are skipped")
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "indexes":
				return idx, nil
			}
			return false, errors.New("unknown condition " + cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// code N CMD ARGS...: run CMD, which must exit with code N;
			// its stdout and stderr are kept for the next assertions.
			"code": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 {
					ts.Fatalf("usage: code N COMMAND [ARGS...]")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("code: bad exit code %q", args[0])
				}
				err = ts.Exec(args[1], args[2:]...)
				got := 0
				var ee *exec.ExitError
				switch {
				case errors.As(err, &ee):
					got = ee.ExitCode()
				case err != nil:
					ts.Fatalf("code: %v", err)
				}
				if got != want {
					ts.Fatalf("%s exited with code %d, want %d", args[1], got, want)
				}
			},
			// waitfile FILE [TIMEOUT]: wait until FILE exists.
			"waitfile": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 1 {
					ts.Fatalf("usage: waitfile FILE [TIMEOUT]")
				}
				limit := 10 * time.Second
				if len(args) > 1 {
					limit, _ = time.ParseDuration(args[1])
				}
				deadline := time.Now().Add(limit)
				for {
					if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
						return
					}
					if time.Now().After(deadline) {
						ts.Fatalf("waitfile: %s did not appear in %v", args[0], limit)
					}
					time.Sleep(10 * time.Millisecond)
				}
			},
			// lt A B: integer A < B (after trimming spaces); A or B may be
			// "stdout", the last command's output.
			"lt": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: lt A B")
				}
				for i, a := range args {
					if a == "stdout" {
						args[i] = ts.ReadFile("stdout")
					}
				}
				a, err1 := strconv.Atoi(strings.TrimSpace(args[0]))
				b, err2 := strconv.Atoi(strings.TrimSpace(args[1]))
				if err1 != nil || err2 != nil {
					ts.Fatalf("lt: not integers: %q %q", args[0], args[1])
				}
				if (a < b) == neg {
					ts.Fatalf("lt %d %d is %v", a, b, a < b)
				}
			},
		},
	})
}

// TestRunInProcess calls run directly, without a child process.
func TestRunInProcess(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "x.db")
	call := func(want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if got := run(args, strings.NewReader(""), &out, &errb); got != want {
			t.Fatalf("psbase %v: exit %d, want %d; stderr: %s", args, got, want, errb.String())
		}
		return out.String()
	}
	call(0, "create", db, "n:int", "s:string?")
	if got := call(0, "insert", db, "n=41"); got != "1\n" {
		t.Fatalf("insert printed %q", got)
	}
	if got := call(0, "incr", db, "1", "n"); got != "42\n" {
		t.Fatalf("incr printed %q", got)
	}
	if got := call(0, "get", db, "1", "n", "s", "version"); got != "42\t\t2\n" {
		t.Fatalf("get printed %q", got)
	}
	call(3, "get", db, "2")
	call(4, "update", db, "1", "n=1", "--if-version", "1")
	call(64, "insert", db, "n=x")
	call(64, "select", db, "n>>3")
	call(8, "get", filepath.Join(dir, "none.db"), "1")
	call(9, "create", db, "n:int")
	call(64, "nosuchcommand")
	call(64, "get", db)
}

// panicReader panics on Read: it stands for a bug reached while a command
// runs.
type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("reader bug") }

// TestPanicExitsInternal: a panic inside a command is reported with its
// stack and exit code 70, never the runtime's 2 (which a script reads as a
// crash) and never a usage code; the store stays usable (no lock is left
// held). The negative control is the same call without the recover: the
// test binary would die.
func TestPanicExitsInternal(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	var out, errb bytes.Buffer
	if got := run([]string{"create", db, "n:int"}, strings.NewReader(""), &out, &errb); got != 0 {
		t.Fatalf("create: exit %d: %s", got, errb.String())
	}
	errb.Reset()
	if got := run([]string{"import", db}, panicReader{}, &out, &errb); got != exitInternal {
		t.Fatalf("import with a panicking stdin: exit %d, want %d; stderr: %s", got, exitInternal, errb.String())
	}
	if !strings.Contains(errb.String(), "internal error") || !strings.Contains(errb.String(), "reader bug") {
		t.Fatalf("stderr does not report the panic: %s", errb.String())
	}
	errb.Reset()
	if got := run([]string{"--timeout", "2s", "insert", db, "n=1"}, strings.NewReader(""), &out, &errb); got != 0 {
		t.Fatalf("insert after the panic: exit %d: %s", got, errb.String())
	}
}

func TestParseFieldSpec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want psbase.Field
		bad  bool
	}{
		{spec: "n:int", want: psbase.Field{Name: "n", Type: psbase.Int}},
		{spec: "n:int=5", want: psbase.Field{Name: "n", Type: psbase.Int, Default: int64(5)}},
		{spec: "s:string?!", want: psbase.Field{Name: "s", Type: psbase.String, Nullable: true, Unique: true, Indexed: true}},
		{spec: "s:string+=a=b", want: psbase.Field{Name: "s", Type: psbase.String, Indexed: true, Default: "a=b"}},
		{spec: "t:time?=null", want: psbase.Field{Name: "t", Type: psbase.Time, Nullable: true}},
		{spec: "n:int=x", bad: true},
		{spec: "n", bad: true},
		{spec: ":int", bad: true},
		{spec: "n:integer?+", want: psbase.Field{Name: "n", Type: psbase.Int, Nullable: true, Indexed: true}},
		{spec: "n:nope", bad: true},
	} {
		got, err := parseFieldSpec(tc.spec)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error", tc.spec)
			}
			continue
		}
		if err != nil || got.Name != tc.want.Name || got.Type != tc.want.Type || got.Nullable != tc.want.Nullable ||
			got.Unique != tc.want.Unique || got.Indexed != tc.want.Indexed || got.Default != tc.want.Default {
			t.Errorf("%q: got %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	si := newSchemaIndex([]psbase.Field{
		{Name: "n", Type: psbase.Int}, {Name: "name", Type: psbase.String},
		{Name: "t", Type: psbase.Time, Nullable: true}, {Name: "b", Type: psbase.Bytes},
	})
	for _, tc := range []struct {
		in   string
		op   psbase.Operator
		bad  bool
		nval int
	}{
		{in: "n>=5", op: psbase.OpGe}, {in: "n <= 5", op: psbase.OpLe}, {in: "n!=5", op: psbase.OpNe},
		{in: "n==5", op: psbase.OpEq}, {in: "n=5", op: psbase.OpEq}, {in: "n<5", op: psbase.OpLt},
		{in: "n>-5", op: psbase.OpGt}, {in: "name^=pre", op: psbase.OpPrefix},
		{in: "name in a,b,c", op: psbase.OpIn, nval: 3}, {in: `name in ["a,b","c"]`, op: psbase.OpIn, nval: 2},
		{in: "t is null", op: psbase.OpIsNull}, {in: "t IS NOT NULL", op: psbase.OpNotNull},
		{in: "name=", op: psbase.OpEq}, {in: "b^=hex:00", op: psbase.OpPrefix},
		{in: "n>>5", bad: true}, {in: "n^=5", bad: true}, {in: "x=1", bad: true}, {in: "=1", bad: true},
		{in: "n", bad: true}, {in: "n like 5", bad: true}, {in: "t is", bad: true}, {in: "n in", bad: true},
		{in: "n in 1,x", bad: true}, {in: "id=1", bad: true}, {in: "n=1.5", bad: true}, {in: "t>yesterday", bad: true},
	} {
		f, err := si.parseFilter(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error, got %+v", tc.in, f)
			}
			continue
		}
		if err != nil || f.Op != tc.op || len(f.Values) != tc.nval {
			t.Errorf("%q: got %+v, %v", tc.in, f, err)
		}
	}
}

func TestExitCodes(t *testing.T) {
	wrap := func(e error) error { return &psbase.Error{Op: "x", Path: "p", Err: e} }
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0}, {errors.New("x"), 1}, {usagef("bad"), 64}, {wrap(psbase.ErrSchema), 64},
		{wrap(psbase.ErrNotFound), 3}, {wrap(psbase.ErrConflict), 4}, {wrap(psbase.ErrDuplicate), 5},
		{wrap(&psbase.LockTimeoutError{Err: context.DeadlineExceeded}), 6}, {wrap(psbase.ErrCorrupt), 7},
		{wrap(psbase.ErrNotExist), 8}, {wrap(psbase.ErrExists), 9}, {&codeError{code: 10}, 10},
		{wrap(&psbase.LockTimeoutError{Err: context.Canceled}), 130}, {wrap(psbase.ErrReadOnly), 1},
		{wrap(psbase.ErrNewerFormat), 11}, {wrap(psbase.ErrNoSpace), 12}, {wrap(psbase.ErrUnsafePath), 13},
		{wrap(psbase.ErrUnknownOutcome), 14},
		{wrap(psbase.ErrUnsupported), 15},
		{wrap(psbase.ErrTxTooLarge), 16},
		{wrap(psbase.ErrChangesGone), 17},
		{wrap(psbase.ErrUnavailable), 18},
		{wrap(fmt.Errorf("%w: %w", psbase.ErrUnavailable, context.Canceled)), 130},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

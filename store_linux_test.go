//go:build linux

package psbase

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// Error cases that need another process: an unprivileged user facing an
// unwritable directory and a read-only store, and a disk that is full (a
// file-size limit, RLIMIT_FSIZE, makes the file system refuse growth exactly
// as a full disk does). Each must give a clear error and change nothing.

const storeHelperEnv = "PSBASE_STORE_HELPER"

// TestStoreHelperProcess is the child side; it does nothing in a normal run.
func TestStoreHelperProcess(t *testing.T) {
	mode := os.Getenv(storeHelperEnv)
	if mode == "" {
		t.Skip("helper process")
	}
	ctx := context.Background()
	db := os.Getenv("PSBASE_STORE_DB")
	report := func(what string, err error) {
		fmt.Printf("storeresult %s readonly=%v permission=%v err=%v\n", what,
			errors.Is(err, ErrReadOnly), errors.Is(err, fs.ErrPermission), err)
	}
	switch mode {
	case "readonly":
		_, err := Create(ctx, filepath.Join(filepath.Dir(db), "new.db"), testFields)
		report("create", err)
		s, err := Open(ctx, db)
		report("open", err)
		if err == nil {
			_, err = s.Get(ctx, 1)
			report("get", err)
			_, err = s.Insert(ctx, Values{"name": "x"})
			report("insert", err)
			_, err = s.Cleanup(ctx)
			report("cleanup", err)
		}
	case "fullsize":
		fi, err := os.Stat(db)
		if err != nil {
			t.Fatal(err)
		}
		lim := &syscall.Rlimit{Cur: uint64(fi.Size()), Max: uint64(fi.Size())}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, lim); err != nil {
			t.Fatal(err)
		}
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Insert(ctx, Values{"name": strings.Repeat("z", 4<<20)})
		report("insert", err)
		// Below the size of any compacted copy: Cleanup cannot finish.
		lim.Cur = 4096
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, lim); err != nil {
			t.Fatal(err)
		}
		_, err = s.Cleanup(ctx)
		report("cleanup", err)
	case "insert":
		s, err := Open(ctx, db)
		if err == nil {
			_, err = s.Insert(ctx, Values{"name": "helper"})
		}
		report("insert", err)
	case "bbolt-check":
		// The negative control of TestCheckAndRecoverSurviveCycle.
		bdb, err := bolt.Open(db, 0o644, &bolt.Options{ReadOnly: true})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(0)
		}
		_ = bdb.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				fmt.Println("check:", err)
			}
			return nil
		})
		fmt.Println("check done")
	case "fuzz-ops":
		helperFuzzOps(db)
	case "freed-page":
		helperFreedPage(db)
	case "hold-gate":
		helperHoldGate(db)
	case "incr":
		helperIncr(db)
	case "cleanup":
		s, err := Open(ctx, db)
		if err == nil {
			_, err = s.Cleanup(ctx)
		}
		report("cleanup", err)
	case "msgpack-skip":
		// The negative control of TestHostileMsgpack: msgpack's own
		// recursive Skip on nesting psbase's bounded reader refuses.
		dec := msgpack.NewDecoder(bytes.NewReader(deepNesting(6_000_000)))
		fmt.Println("skip:", dec.Skip())
	case "gc-insert":
		gcChild(ctx, db) // TestGroupCommitCombinerKilled
	case "gc-stop":
		gcStopChild(ctx, db) // TestGroupCommitDeadline
	case "crashloop", "crashloop-weak":
		crashLoopChild(ctx, db, mode == "crashloop-weak") // TestWritePathsKilled
	case "create-overwrite", "create-open-create", "create-create":
		// Loops until killed (TestCreateKilled): each round replaces the
		// store with one of another schema.
		fmt.Println("looping")
		for i := 0; ; i++ {
			fields := testFields
			if i%2 == 1 {
				fields = []Field{{Name: "only", Type: String}}
			}
			var err error
			switch mode {
			case "create-overwrite":
				_, err = Create(ctx, db, fields, WithOverwrite())
			case "create-open-create":
				var st *Store
				if st, err = Open(ctx, db, WithCreate(fields)); err == nil {
					err = st.Destroy(ctx)
				}
			case "create-create":
				_, err = Create(ctx, db, fields)
				if errors.Is(err, ErrExists) {
					var st *Store
					if st, err = Open(ctx, db); err == nil {
						err = st.Destroy(ctx)
					}
				}
			}
			if err != nil {
				fmt.Println("error:", err)
				os.Exit(3)
			}
		}
	}
	os.Exit(0)
}

// runStoreHelper runs the helper as uid 65534 when asUser, and returns its
// "storeresult" lines keyed by operation.
func runStoreHelper(t *testing.T, mode, db string, asUser bool) map[string]string {
	t.Helper()
	exe := os.Args[0]
	if asUser {
		if os.Geteuid() != 0 {
			t.Skip("needs root to run a child as another user")
		}
		// A copy of the test binary that uid 65534 may execute.
		exe = filepath.Join(filepath.Dir(filepath.Dir(db)), "psbase-store.test")
		b, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "-test.run=^TestStoreHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), storeHelperEnv+"="+mode, "PSBASE_STORE_DB="+db)
	if asUser {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	res := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "storeresult "); ok {
			k, v, _ := strings.Cut(s, " ")
			res[k] = v
		}
	}
	return res
}

func TestUnwritableDirectoryAndReadOnlyStore(t *testing.T) {
	base, err := os.MkdirTemp("", "psbase-store-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(base, "ro"), 0o755); _ = os.RemoveAll(base) })
	dir := filepath.Join(base, "ro")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "owned.db")
	s, err := Create(context.Background(), db, testFields)
	if err != nil {
		t.Fatal(err)
	}
	mustInsert(t, s, Values{"name": "root's"})
	// Readers of another user may share the lock: they need the lock files
	// readable; the store and directory stay read-only to them.
	for _, p := range []string{base, dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, db)
	r := runStoreHelper(t, "readonly", db, true)
	t.Logf("as uid 65534: %v", r)
	for _, op := range []string{"create", "insert", "cleanup"} {
		if !strings.HasPrefix(r[op], "readonly=true") {
			t.Errorf("%s by another user: %q, want ErrReadOnly", op, r[op])
		}
	}
	for _, op := range []string{"open", "get"} {
		if !strings.Contains(r[op], "err=<nil>") {
			t.Errorf("%s by another user: %q, want success (reads share the lock)", op, r[op])
		}
	}
	if fileHash(t, db) != before {
		t.Error("the refused writes changed the store")
	}
	if _, err := os.Stat(filepath.Join(dir, "new.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused Create left a file")
	}
}

func TestFullDisk(t *testing.T) {
	s, db := newTestStore(t)
	mustInsert(t, s, Values{"name": "before"})
	before := fileHash(t, db)
	r := runStoreHelper(t, "fullsize", db, false)
	t.Logf("with the file size capped: %v", r)
	for _, op := range []string{"insert", "cleanup"} {
		if strings.Contains(r[op], "err=<nil>") || !strings.Contains(r[op], "too large") {
			t.Errorf("%s on a full disk: %q, want a clear 'file too large' error", op, r[op])
		}
	}
	if fileHash(t, db) != before {
		t.Error("the failed insert changed the store")
	}
	if _, err := os.Stat(db + ".compact"); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the failed cleanup left its temporary file")
	}
	if n, err := s.Len(context.Background()); err != nil || n != 1 {
		t.Fatalf("len %d %v", n, err)
	}
	if rep, err := s.Check(context.Background()); err != nil {
		t.Fatalf("check: %v %v", err, rep.Problems)
	}
}

package etcd

// backup_test.go: Backup and BackupFile of a store on etcd while two writer
// processes go on: each writer's transaction bumps a counter record and
// inserts the set record of the counter's new value, so a copy made at one
// revision holds exactly the set records 1..counter. The backup is a local
// store file: Open, Check and Restore take it. The negative control tears
// the copy (a new revision for every key) and the check catches it.
//
// May touch: a one-member cluster of its own, the writer processes it
// starts, files in the test's temporary directory.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
	"github.com/psbase/psbase/internal/backend"
)

const envBackupWriter = "PSBASE_ETCD_BACKUP_WRITER" // "URL counterID"

var backupSchema = []psbase.Field{{Name: "kind", Type: psbase.String}, {Name: "n", Type: psbase.Int}}

// init makes the test binary a writer process when the test started it as
// one (etcdtest.Main's member role has its own variable).
func init() {
	if v := os.Getenv(envBackupWriter); v != "" {
		os.Exit(runBackupWriter(v))
	}
}

// runBackupWriter bumps the counter and inserts its set record, in one
// transaction, until its stdin closes; "RUN" after the first commit.
func runBackupWriter(v string) int {
	raw, idText, _ := strings.Cut(v, " ")
	id, _ := strconv.ParseUint(idText, 10, 64)
	ctx := context.Background()
	s, err := psbase.Open(ctx, raw)
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	defer s.Close()
	stop := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString(0)
		close(stop)
	}()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return 0
		default:
		}
		err := s.Txn(ctx, func(tx *psbase.Tx) error {
			r, err := tx.Get(id)
			if err != nil {
				return err
			}
			n := r.Values["n"].(int64) + 1
			if _, err := tx.UpdateByID(id, psbase.Values{"n": n}); err != nil {
				return err
			}
			_, err = tx.Insert(psbase.Values{"kind": "set", "n": n})
			return err
		})
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		if i == 0 {
			fmt.Println("RUN")
		}
	}
}

// consistent opens the backup file and reports whether it is the store at
// one instant: set records exactly 1..counter, and Check clean.
func consistent(t *testing.T, path string, id uint64) (ok bool, why string) {
	t.Helper()
	ctx := context.Background()
	s, err := psbase.Open(ctx, path)
	if err != nil {
		return false, fmt.Sprintf("open: %v", err)
	}
	defer s.Close()
	c, err := s.Get(ctx, id)
	if err != nil {
		return false, fmt.Sprintf("counter: %v", err)
	}
	counter := c.Values["n"].(int64)
	seen := map[int64]bool{}
	for r, err := range s.Scan(ctx, psbase.Query{}) {
		if err != nil {
			return false, fmt.Sprintf("scan: %v", err)
		}
		if r.Values["kind"] == "set" {
			n := r.Values["n"].(int64)
			if seen[n] || n < 1 || n > counter {
				return false, fmt.Sprintf("set record %d (counter %d)", n, counter)
			}
			seen[n] = true
		}
	}
	if int64(len(seen)) != counter {
		return false, fmt.Sprintf("%d set records, counter %d", len(seen), counter)
	}
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		return false, fmt.Sprintf("check: %+v %v", rep, err)
	}
	return true, fmt.Sprintf("counter %d", counter)
}

func TestBackupAtOneRevision(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member and writer processes")
	}
	cl := etcdtest.Start(t, etcdtest.Options{Members: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	raw := "etcd://" + strings.Join(hostsOf(cl.Endpoints()), ",") + "/bk"
	s, err := psbase.Create(ctx, raw, backupSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, err := s.Insert(ctx, psbase.Values{"kind": "counter", "n": 0})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	for range 2 {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envBackupWriter+"="+raw+" "+strconv.FormatUint(id, 10))
		stdin, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "RUN\n" {
			t.Fatalf("writer: %q %v", line, err)
		}
	}
	dir := t.TempDir()

	var buf bytes.Buffer
	n, err := s.Backup(ctx, &buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("Backup = %d, %v (%d bytes)", n, err, buf.Len())
	}
	p1 := filepath.Join(dir, "stream.psb")
	if err := os.WriteFile(p1, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, why := consistent(t, p1, id); !ok {
		t.Fatalf("Backup to a writer: %s", why)
	} else {
		t.Logf("Backup: %d bytes, %s", n, why)
	}
	p2 := filepath.Join(dir, "file.psb")
	if _, err := s.BackupFile(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if ok, why := consistent(t, p2, id); !ok {
		t.Fatalf("BackupFile: %s", why)
	}
	if _, err := s.BackupFile(ctx, p2); !errors.Is(err, psbase.ErrExists) {
		t.Fatalf("BackupFile over a file: %v", err)
	}
	// The backup is a local store like any other: a local one restores it.
	local, err := psbase.Create(ctx, filepath.Join(dir, "local.psb"), backupSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if err := local.Restore(ctx, p2); err != nil {
		t.Fatalf("restore of the etcd backup into a local store: %v", err)
	}

	// Negative control: a torn copy (each key at its own revision) is
	// caught by the same check while the writers go on.
	t.Run("torn", func(t *testing.T) {
		backend.WeakTornBackup.Store(true)
		defer backend.WeakTornBackup.Store(false)
		for i := range 5 {
			p := filepath.Join(dir, fmt.Sprintf("torn%d.psb", i))
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Backup(ctx, f)
			f.Close()
			if err != nil {
				t.Logf("torn backup: %v", err)
				return // a torn copy that fails is caught too
			}
			if ok, why := consistent(t, p, id); !ok {
				t.Logf("torn backup caught: %s", why)
				return
			}
		}
		t.Fatal("five torn backups passed the check; the control expects it to catch them")
	})
}

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/psbase/psbase"
)

// TestWatchInterrupt runs "psbase watch" as a process: it streams each
// change another process commits as it happens, one JSON line each, and
// Ctrl-C (SIGINT) ends it with exit code 130 and no message.
func TestWatchInterrupt(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT")
	}
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "w.db")
	s, err := psbase.Create(ctx, db, []psbase.Field{{Name: "name", Type: psbase.String}})
	if err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("psbase") // this test binary, as testscript installed it
	if err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(bin, "watch", db, "--json")
	out, _ := cmd.StdoutPipe()
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// It says where it starts once it has its revision.
	errs := bufio.NewReader(errPipe)
	if first, _ := errs.ReadString('\n'); !strings.HasPrefix(first, "watching") {
		t.Fatalf("stderr %q", first)
	}
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errs)
		rest <- string(b)
	}()
	for i, want := range []string{`{"rev":1,"kind":"insert","id":1}`, `{"rev":2,"kind":"update","id":1}`} {
		if i == 0 {
			s.Insert(ctx, psbase.Values{"name": "a"})
		} else {
			s.UpdateByID(ctx, 1, psbase.Values{"name": "b"})
		}
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("line %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no line for the change")
		}
	}
	cmd.Process.Signal(os.Interrupt)
	msg := <-rest
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitSignal {
		t.Fatalf("after SIGINT: %v, want exit code %d", err, exitSignal)
	}
	if msg != "" && msg != "psbase: interrupted\n" {
		t.Errorf("stderr after the starting line: %q, want at most the interruption", msg)
	}
}

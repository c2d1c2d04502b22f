// Package demo holds the few lines the example programs share: where the
// store lives, starting a storm of worker processes, and reading what the
// workers printed. The examples are documentation; this keeps them short.
package demo

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/psbase/psbase/storm"
)

var tempDir string // removed by Exit and Fatalf

// StorePath returns path if it is set, otherwise a store file in a fresh
// temporary directory, which Exit removes.
func StorePath(path, name string) string {
	if path != "" {
		return path
	}
	dir, err := os.MkdirTemp("", "psbase-"+name+"-")
	if err != nil {
		Fatalf("%v", err)
	}
	tempDir = dir
	return filepath.Join(dir, name+".db")
}

// Exit removes the temporary store, if any, and exits with code.
func Exit(code int) {
	if tempDir != "" {
		os.RemoveAll(tempDir)
	}
	os.Exit(code)
}

// Storm runs the running program n times at once with args (after the
// program's own path; "{i}" is replaced by the task number). storm's barrier
// starts all n processes, waits until every one is ready, and then releases
// them at the same instant. Call storm.MaybeLaunch first thing in main.
func Storm(ctx context.Context, n int, timeout time.Duration, args ...string) *storm.CommandLoop {
	exe, err := os.Executable()
	if err != nil {
		Fatalf("%v", err)
	}
	res, err := storm.RunCommands(ctx, storm.CommandConfig{
		Commands: []storm.Command{{Argv: append([]string{exe}, args...), Count: n}},
		Timeout:  timeout,
	})
	if err != nil {
		Fatalf("storm: %v", err)
	}
	return res.Loops[0]
}

// Failures returns how many processes of the storm failed, and a one-line
// account of the first.
func Failures(l *storm.CommandLoop) (n int, first string) {
	for _, p := range l.Procs {
		if !p.Failed() {
			continue
		}
		if n == 0 {
			why := strings.TrimSpace(p.Stderr)
			if i := strings.LastIndexByte(why, '\n'); i >= 0 {
				why = why[i+1:]
			}
			if p.Err != "" {
				why = p.Err + " " + why
			}
			if tempDir != "" { // shorter: name the store file only
				why = strings.ReplaceAll(why, tempDir+string(filepath.Separator), "")
			}
			first = fmt.Sprintf("task %d (pid %d) exit %d: %s", p.Task, p.Pid, p.ExitCode, why)
		}
		n++
	}
	return n, first
}

// Lines returns every line the storm's processes printed on stdout, in task
// order.
func Lines(l *storm.CommandLoop) []string {
	var lines []string
	for _, p := range l.Procs {
		sc := bufio.NewScanner(strings.NewReader(p.Stdout))
		for sc.Scan() {
			if s := strings.TrimSpace(sc.Text()); s != "" {
				lines = append(lines, s)
			}
		}
	}
	return lines
}

// Ms formats a duration in milliseconds, or seconds from one second on.
func Ms(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// Fatalf prints the error and exits with status 2: the demo could not run,
// which is not the same as a guarantee that failed (status 1).
func Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, filepath.Base(os.Args[0])+": "+format+"\n", args...)
	Exit(2)
}

// Command psbase is the command-line tool of psbase, a process-safe embedded
// single-table record store. Every invocation is one locked operation (or
// one transaction) on the store, so dozens of cron jobs and shell scripts can
// run it against the same file at the same minute.
//
// Run "psbase --help" for the command list and README.md for the shell
// syntax (fields, values, filters), the output formats and the exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// A storm launcher re-executes this binary; it must take over before
	// anything else runs (see storm.go).
	maybeLaunch()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

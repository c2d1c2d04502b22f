package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/psbase/psbase"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// app holds one invocation's streams and global flags. Nothing in the
// package is global and mutable: run builds a fresh app and command tree.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	timeout  time.Duration
	quiet    bool
	format   string
	jsonOut  bool
	csvOut   bool
	noHeader bool

	started bool // a command's RunE began: later errors are not usage errors
}

// run executes the psbase command line args with the given streams and
// returns the exit code. It is what main calls, and what tests call
// in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdin, stdout, stderr)
}

func runContext(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	defer func() {
		// A panic here is a bug in psbase or the command; the library has
		// already released its locks (its fault guard) by the time one
		// reaches this far. Say so with the stack, and exit with a code of
		// its own rather than the runtime's 2.
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "psbase: internal error (please report it): panic: %v\n%s", p, debug.Stack())
			code = exitInternal
		}
	}()
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	args = negativeDelta(args)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if !a.started {
		var ce *codeError
		if !errors.As(err, &ce) {
			err = &usageError{msg: err.Error()}
		}
	}
	var pe0 *psbase.Error
	if errors.As(err, &pe0) && (pe0.Op == "txn" || pe0.Op == "view") {
		// Name the command, not the library's generic transaction.
		if c, _, ferr := root.Find(args); ferr == nil && c != nil && c != root {
			pe0.Op = c.Name()
		}
	}
	code = exitCode(err)
	msg := errorMessage(err)
	if code == exitSignal {
		msg = interruptedMessage(err)
	}
	if hint := negativeHint(err); hint != "" {
		msg += "\n" + hint
	}
	if errors.Is(err, psbase.ErrExists) {
		msg += "\nUse 'psbase create --force' to replace it (its records are lost)."
	}
	var pe *psbase.Error
	if code == exitUsage && !errors.As(err, &pe) {
		if c, _, ferr := root.Find(args); ferr == nil && c != nil {
			msg += fmt.Sprintf("\nRun '%s --help' for usage.", c.CommandPath())
		}
	}
	if msg != "psbase: " {
		fmt.Fprintln(stderr, msg)
	}
	return code
}

// buildVersion is the version the Go toolchain recorded in the binary
// (runtime/debug build info): the module version for "go install
// ...@version", "(devel)" for a build from a clone, with the VCS revision
// and time when they were stamped (go build -buildvcs), and the Go version.
// Nothing is hard-coded.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown: built without module support)"
	}
	return versionOf(bi)
}

// versionOf renders build info as buildVersion does.
func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when, dirty string
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.time":
			when = st.Value
		case "vcs.modified":
			if st.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (" + rev
		if when != "" {
			v += " " + when
		}
		v += dirty + ")"
	}
	return v + " " + bi.GoVersion
}

// interruptedMessage is the message of a command cut short by Ctrl-C or
// SIGTERM (exit 130): it says so, rather than "lock timeout" or "context
// canceled".
func interruptedMessage(err error) string {
	var pe *psbase.Error
	if !errors.As(err, &pe) {
		return "psbase: interrupted"
	}
	if errors.Is(err, psbase.ErrLockTimeout) {
		return fmt.Sprintf("psbase: interrupted: %s %s was waiting for the store's lock and wrote nothing", pe.Op, pe.Path)
	}
	return fmt.Sprintf("psbase: interrupted: %s %s stopped; its transaction was rolled back", pe.Op, pe.Path)
}

// isNegativeNumber reports whether a shell word is a negative number, which
// pflag would take for a flag (-1 reads as the shorthand flag "1").
func isNegativeNumber(s string) bool {
	if len(s) < 2 || s[0] != '-' || !(s[1] >= '0' && s[1] <= '9' || s[1] == '.') {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// negativeDelta lets "psbase incr DB ID FIELD -1" mean a delta of -1: when
// the DELTA word (incr's fourth argument) is a negative number and no "--"
// came before it, it is moved behind a "--" at the end, so pflag reads it as
// the argument and not as the shorthand flag "-1". Flags may come before or
// after it.
func negativeDelta(args []string) []string {
	cmd := slices.Index(args, "incr")
	if cmd < 0 || slices.Contains(args, "--") {
		return args
	}
	valueFlags := map[string]bool{"--timeout": true, "--format": true}
	pos := 0
	for i := cmd + 1; i < len(args); i++ {
		w := args[i]
		switch {
		case isNegativeNumber(w):
			pos++
			if pos == 4 {
				out := append(slices.Clone(args[:i]), args[i+1:]...)
				return append(out, "--", w)
			}
		case valueFlags[w]:
			i++
		case strings.HasPrefix(w, "-"):
		default:
			pos++
		}
	}
	return args
}

// negativeHint explains pflag's "unknown shorthand flag: '1' in -1": a
// negative number needs -- before it.
func negativeHint(err error) string {
	msg := err.Error()
	i := strings.Index(msg, "unknown shorthand flag: ")
	if i < 0 {
		return ""
	}
	j := strings.LastIndex(msg, " in ")
	if j < 0 || !isNegativeNumber(strings.TrimSpace(msg[j+4:])) {
		return ""
	}
	w := strings.TrimSpace(msg[j+4:])
	return fmt.Sprintf("%s looks like a negative number: put -- before it (every word after -- is an argument, not a flag), e.g. psbase incr DB ID FIELD -- %s", w, w)
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "psbase",
		Short: "A process-safe single-table record store, from the shell",
		Long: `psbase works on a psbase store: one table of records in one file, shared
safely by any number of processes. Every psbase command is one locked
operation or transaction, so cron jobs and scripts may run it concurrently.

Fields:   NAME:TYPE[?][!|+][=DEFAULT]   (types: string int float bool time bytes;
          ? nullable, ! unique index, + index)
Values:   field=text (parsed by the field's type) or field:=JSON (e.g. n:=null)
Filters:  'n>=5'  name=bob  'name!=bob'  'name^=pre'  'tag in a,b'  'x is null'
Formats:  aligned table on a terminal, tab-separated otherwise;
          --json (JSON lines), --csv, --format table|tsv|json|csv

` + exitCodeTable,
		Version:       buildVersion(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Example: `  psbase create jobs.db 'name:string!' runs:int 'started:time?'
  psbase insert jobs.db name=backup
  psbase incr jobs.db 1 runs
  psbase select jobs.db 'runs>=1' --sort -runs --limit 10`,
	}
	root.SetVersionTemplate("psbase {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.DurationVar(&a.timeout, "timeout", psbase.DefaultLockTimeout, "how long to wait for the store's lock (0: forever)")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "no informational messages or progress on stderr")
	pf.StringVar(&a.format, "format", "", "output format: table, tsv, json or csv (default: table on a terminal, tsv otherwise)")
	pf.BoolVar(&a.jsonOut, "json", false, "output JSON lines (same as --format json)")
	pf.BoolVar(&a.csvOut, "csv", false, "output CSV (same as --format csv)")
	pf.BoolVar(&a.noHeader, "no-header", false, "omit the header line of table, tsv and csv output")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{msg: err.Error()}
	})
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		a.started = true
		_, err := a.outFormat()
		return err
	}
	root.AddGroup(
		&cobra.Group{ID: "records", Title: "Records:"},
		&cobra.Group{ID: "schema", Title: "Store and schema:"},
		&cobra.Group{ID: "admin", Title: "Maintenance and testing:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("records", a.insertCmd(), a.getCmd(), a.selectCmd(), a.countCmd(), a.updateCmd(),
		a.incrCmd(), a.upsertCmd(), a.deleteCmd(), a.batchCmd(), a.importCmd(), a.exportCmd())
	add("schema", a.createCmd(), a.schemaCmd(), a.addFieldCmd(), a.dropFieldCmd(),
		a.setDefaultCmd(), a.createIndexCmd(), a.dropIndexCmd())
	add("records", a.watchCmd())
	add("admin", a.checkCmd(), a.recoverCmd(), a.backupCmd(), a.restoreCmd(), a.cleanupCmd(), a.statsCmd(), a.locksCmd(), a.stormCmd())
	for _, c := range root.Commands() {
		switch c.Name() {
		case "insert", "update", "upsert", "select", "count", "delete", "export", "set-default":
			c.ValidArgsFunction = a.completeFields("=")
		case "get", "incr", "drop-field", "create-index", "drop-index":
			c.ValidArgsFunction = a.completeFields("")
		}
	}
	return root
}

// opts are the psbase options every command opens the store with.
func (a *app) opts() []psbase.Option {
	return []psbase.Option{psbase.WithLockTimeout(a.timeout)}
}

// open opens an existing store. One command is one process doing one
// operation, so Open skips its own check of the file (WithLazyOpen): the
// operation checks the format under its lock anyway, and a storm of cron
// jobs takes the lock once per command instead of twice.
//
// A store URL is opened with the check: lazily, a remote store that is not
// there reads as "not a psbase store" (exit 7) instead of "no store" (8).
func (a *app) open(ctx context.Context, path string) (*psbase.Store, error) {
	if isStoreURL(path) {
		return psbase.Open(ctx, path, a.opts()...)
	}
	return psbase.Open(ctx, path, append(a.opts(), psbase.WithLazyOpen())...)
}

// infof writes an informational line to stderr unless --quiet.
func (a *app) infof(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintf(a.stderr, format+"\n", args...)
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// outFormat resolves the output format from the flags.
func (a *app) outFormat() (string, error) {
	f := strings.ToLower(a.format)
	n := 0
	if f != "" {
		n++
	}
	if a.jsonOut {
		n++
		f = "json"
	}
	if a.csvOut {
		n++
		f = "csv"
	}
	if n > 1 {
		return "", usagef("choose one output format: --format, --json or --csv")
	}
	switch f {
	case "":
		if isTerminal(a.stdout) {
			return "table", nil
		}
		return "tsv", nil
	case "table", "tsv", "json", "csv":
		return f, nil
	}
	return "", usagef("unknown output format %q (want table, tsv, json or csv)", a.format)
}

// exactArgs, minArgs and rangeArgs are cobra argument validators that
// report usage errors.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s: want %s, got %d argument(s)", c.Name(), what, len(args))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("%s: want %s, got %d argument(s)", c.Name(), what, len(args))
		}
		return nil
	}
}

func rangeArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("%s: want %s, got %d argument(s)", c.Name(), what, len(args))
		}
		return nil
	}
}

// withStore adapts a command body that works on the store named by the first
// argument: it opens the store (lazily, see open) and hands it over with the
// command's context.
func (a *app) withStore(fn func(ctx context.Context, s *psbase.Store, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		s, err := a.open(ctx, args[0])
		if err != nil {
			return err
		}
		return fn(ctx, s, args)
	}
}

package main

// cmd_schema.go: create (with --mode) and the schema and index commands.
//
// May touch: the store named on the command line and its lock files
// (create --mode sets their permission bits).

import (
	"context"
	"os"
	"strconv"

	"github.com/psbase/psbase"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

const fieldSpecHelp = `A field is NAME:TYPE[MARKERS][=DEFAULT]:
  TYPE     string, int, float, bool, time or bytes
  MARKERS  ? nullable   ! unique index   + (non-unique) index, in any order
  DEFAULT  the value of records that do not give the field, parsed by the
           type (for a nullable non-string field =null is null; without a
           default a field defaults to null if nullable, else its zero value)
Examples: 'name:string!'  runs:int=0  ratio:float  ok:bool=true  'started:time?'
          tag:string+  blob:bytes  'note:string?'
(quote a spec with ? or !: zsh globs ? and history may expand !)`

// parseMode parses --mode: octal permission bits such as 0660 or 660.
func parseMode(s string) (os.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, usagef("bad --mode %q: want octal permission bits like 0660 or 0644", s)
	}
	if m&0o600 != 0o600 {
		return 0, usagef("bad --mode %q: the owner must be able to read and write the store (0600 at least)", s)
	}
	return os.FileMode(m), nil
}

// chmodStore gives the store and the lock files beside it exactly mode,
// whatever the umask: they are the files every user of a shared store
// opens. Links and other non-regular files are left alone (the library
// refuses them anyway).
func chmodStore(path string, mode os.FileMode) error {
	for _, p := range []string{path, path + ".lock", path + ".gate"} {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) createCmd() *cobra.Command {
	var (
		force bool
		mode  string
	)
	c := &cobra.Command{
		Use:   "create DB FIELD:TYPE[?][!|+][=DEFAULT]...",
		Short: "Create a store with a schema",
		Long: "Create a new store file with these fields (and indexes). If a store or any\n" +
			"non-empty file is there already, exit with code 9 unless --force, which\n" +
			"replaces it (its records are lost).\n\n" +
			"--mode sets the permission bits of the store and its lock files exactly\n" +
			"(the umask does not reduce them): a store that the members of a group\n" +
			"share wants --mode 0660 and a directory of that group (chgrp it, and\n" +
			"chmod g+s it so new files get the group).\n\n" + fieldSpecHelp,
		Example: `  psbase create jobs.db 'name:string!' runs:int=0 'started:time?' tag:string+
  psbase create --force scratch.db n:int
  psbase create --mode 0660 /srv/shared/jobs.db 'name:string!' runs:int`,
		Args: minArgs(2, "DB and at least one FIELD:TYPE"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			var fields []psbase.Field
			for _, spec := range args[1:] {
				f, err := parseFieldSpec(spec)
				if err != nil {
					return err
				}
				fields = append(fields, f)
			}
			opts := a.opts()
			if force {
				opts = append(opts, psbase.WithOverwrite())
			}
			var perm os.FileMode
			if mode != "" {
				var err error
				if perm, err = parseMode(mode); err != nil {
					return err
				}
				opts = append(opts, psbase.WithFileMode(perm))
			}
			s, err := psbase.Create(ctx, args[0], fields, opts...)
			if err != nil {
				return err
			}
			if mode != "" {
				if err := chmodStore(s.Path(), perm); err != nil {
					return err
				}
				a.infof("created %s with %d field(s), mode %04o", s.Path(), len(fields), perm)
				return nil
			}
			a.infof("created %s with %d field(s)", s.Path(), len(fields))
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "replace an existing store (its records are lost)")
	c.Flags().StringVar(&mode, "mode", "", "file mode of the store and its lock files, octal, exactly (not reduced by the umask): 0660 for a store shared by a group")
	return c
}

func (a *app) schemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema DB",
		Short: "Print the fields of a store",
		Long: `Print the fields in order: name, type, default, whether nullable, and the
index (unique, index or empty).`,
		Example: `  psbase schema jobs.db
  psbase schema jobs.db --json`,
		Args: exactArgs(1, "DB"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			fields, err := s.Schema(ctx)
			if err != nil {
				return err
			}
			w := a.newRowWriter([]string{"name", "type", "default", "nullable", "index"})
			for _, f := range fields {
				idx := ""
				switch {
				case f.Unique:
					idx = "unique"
				case f.Indexed:
					idx = "index"
				}
				if err := w.writeRow([]any{f.Name, f.Type.String(), f.Default, f.Nullable, idx}); err != nil {
					return err
				}
			}
			return w.flush()
		}),
	}
}

func (a *app) addFieldCmd() *cobra.Command {
	var after string
	c := &cobra.Command{
		Use:   "add-field DB FIELD:TYPE[?][!|+][=DEFAULT] [--after FIELD]",
		Short: "Add a field (existing records read its default)",
		Long: "Add a field at the end, or after --after FIELD. No record is rewritten:\n" +
			"existing records read back the default.\n\n" + fieldSpecHelp,
		Example: `  psbase add-field jobs.db priority:int=5 --after name
  psbase add-field jobs.db 'owner:string?'`,
		Args: exactArgs(2, "DB FIELD:TYPE"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			f, err := parseFieldSpec(args[1])
			if err != nil {
				return err
			}
			s, err := a.open(ctx, args[0])
			if err != nil {
				return err
			}
			if err := s.AddField(ctx, f, after); err != nil {
				return err
			}
			a.infof("added field %s", f.Name)
			return nil
		},
	}
	c.Flags().StringVar(&after, "after", "", "place the new field after this one (default: at the end)")
	return c
}

func (a *app) dropFieldCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "drop-field DB FIELD",
		Short: "Remove a field (and its index)",
		Long: `Remove a field. Its values can never be read again, even by a later field of
the same name. An index on it is dropped. The last field cannot be dropped.`,
		Example: `  psbase drop-field jobs.db note`,
		Args:    exactArgs(2, "DB FIELD"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			if err := s.DropField(ctx, args[1]); err != nil {
				return err
			}
			a.infof("dropped field %s", args[1])
			return nil
		}),
	}
}

func (a *app) setDefaultCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-default DB FIELD=VALUE",
		Short: "Change a field's default",
		Long: "Change (persistently) the default of a field: the value inserts without the\n" +
			"field get, and records that never stored it read back.\n\n" + valuesHelp,
		Example: `  psbase set-default jobs.db runs=1
  psbase set-default jobs.db note:=null`,
		Args: exactArgs(2, "DB FIELD=VALUE"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			// Parsed against the schema read now; if another process
			// changes the field's type in between, SetDefault refuses the
			// value with a schema error (exit 64), changing nothing.
			fields, err := s.Schema(ctx)
			if err != nil {
				return err
			}
			name, v, err := newSchemaIndex(fields).parseAssignment(args[1])
			if err != nil {
				return err
			}
			if err := s.SetDefault(ctx, name, v); err != nil {
				return err
			}
			a.infof("default of %s set", name)
			return nil
		}),
	}
}

func (a *app) createIndexCmd() *cobra.Command {
	var unique bool
	c := &cobra.Command{
		Use:   "create-index DB FIELD [--unique]",
		Short: "Build a secondary index on a field",
		Long: `Build an index on FIELD in one transaction (all or nothing). With --unique a
second record with the same value is refused (exit code 5), and building fails
with code 5 if existing records already share a value. Shows a progress bar on
a terminal.`,
		Example: `  psbase create-index jobs.db name --unique
  psbase create-index jobs.db tag`,
		Args: exactArgs(2, "DB FIELD"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			var bar *progressbar.ProgressBar
			progress := func(done, total int) {}
			if !a.quiet && isTerminal(a.stderr) {
				progress = func(done, total int) {
					if bar == nil {
						bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(a.stderr),
							progressbar.OptionSetDescription("indexing "+args[1]),
							progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
					}
					_ = bar.Set(done)
				}
			}
			opts := []psbase.IndexOption{psbase.IndexProgress(progress)}
			if unique {
				opts = append(opts, psbase.Unique())
			}
			err := s.CreateIndex(ctx, args[1], opts...)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			kind := "index"
			if unique {
				kind = "unique index"
			}
			a.infof("created %s on %s", kind, args[1])
			return nil
		}),
	}
	c.Flags().BoolVar(&unique, "unique", false, "refuse two records with the same value")
	return c
}

func (a *app) dropIndexCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "drop-index DB FIELD",
		Short:   "Remove the index on a field",
		Example: `  psbase drop-index jobs.db tag`,
		Args:    exactArgs(2, "DB FIELD"),
		RunE: a.withStore(func(ctx context.Context, s *psbase.Store, args []string) error {
			if err := s.DropIndex(ctx, args[1]); err != nil {
				return err
			}
			a.infof("dropped index on %s", args[1])
			return nil
		}),
	}
}

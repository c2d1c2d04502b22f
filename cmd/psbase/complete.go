package main

import (
	"context"
	"strings"
	"time"

	"github.com/psbase/psbase"
	"github.com/spf13/cobra"
)

// Shell completion: the first argument of a store command is a file; later
// ones complete to the store's field names (read under a shared lock with a
// short timeout, so a busy store never hangs the shell).

// completeFields returns a completion function that, after the DB argument,
// offers each field name followed by suffix ("=" for assignments and
// filters, "" for bare names).
func (a *app) completeFields(suffix string) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, cobra.ShellCompDirectiveDefault // the store file
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := psbase.Open(ctx, args[0], psbase.WithLockTimeout(time.Second))
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		fields, err := s.Schema(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, f := range fields {
			if strings.HasPrefix(f.Name, toComplete) {
				out = append(out, f.Name+suffix)
			}
		}
		dir := cobra.ShellCompDirectiveNoFileComp
		if suffix != "" {
			dir |= cobra.ShellCompDirectiveNoSpace
		}
		return out, dir
	}
}

package main

// locks_remote.go: "psbase locks URL" — the holders of a remote store's lock
// as its backend lists them (host, pid, op, since, lease), without taking
// the lock.
//
// May touch: nothing local; the backend's connections.

import (
	"context"
	"strings"
	"time"

	"github.com/psbase/psbase"
)

// isStoreURL reports whether a DB argument is a store URL ("etcd://…")
// rather than a path, by psbase's rule: a letter, then letters, digits, '+',
// '-' or '.', at least two characters, then "://" (so "C://x" is a path).
func isStoreURL(arg string) bool {
	i := strings.Index(arg, "://")
	if i < 2 {
		return false
	}
	for j, c := range arg[:i] {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// remoteLocks prints the holders of a remote store's lock. --timeout bounds
// the whole look-up (connecting included), as it bounds a lock wait.
func (a *app) remoteLocks(ctx context.Context, url string) error {
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	holders, err := psbase.LockHoldersContext(ctx, url)
	if err != nil {
		return err
	}
	now := time.Now()
	w := a.newRowWriter([]string{"host", "pid", "state", "op", "for", "since", "lease"})
	for _, h := range holders {
		state := "holding"
		if h.Waiting {
			state = "waiting"
		}
		var age, since any
		if !h.Since.IsZero() {
			age = now.Sub(h.Since).Round(time.Millisecond).String()
			since = h.Since
		}
		if err := w.writeRow([]any{h.Host, h.PID, state, h.Op, age, since, h.Lease}); err != nil {
			return err
		}
	}
	if len(holders) == 0 {
		a.infof("no process holds or waits for the lock of %s", redactURL(url))
	}
	return w.flush()
}

// redactURL is a store URL fit to print: user:password@ and the query cut,
// as psbase's errors show it.
func redactURL(url string) string {
	i := strings.Index(url, "://")
	if i < 0 {
		return url
	}
	rest := url[i+3:]
	if j := strings.IndexAny(rest, "?#"); j >= 0 {
		rest = rest[:j]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if slash := strings.Index(rest, "/"); slash < 0 || at < slash {
			rest = "…@" + rest[at+1:]
		}
	}
	return url[:i+3] + rest
}

package psbase

// cleanup_remote.go: Cleanup of a remote store. There is no file to
// compact: the store is checked as Check checks it (a damaged one is
// refused with ErrCorrupt, as locally), then its backend removes the
// store's own dead keys (backend.Cleaner). For etcd that never includes
// compacting the cluster's history, which is the cluster operator's.
//
// May touch: nothing local; the remote store through its backend.

import (
	"context"
	"log/slog"
	"time"

	"github.com/psbase/psbase/internal/backend"
)

// cleanupRemote is Cleanup for a remote store. Before and After are the
// bytes of the store's keys and values; Records is what Check counted.
func (s *Store) cleanupRemote(ctx context.Context) (res CleanupResult, err error) {
	start := time.Now()
	defer func() { s.done(ctx, "cleanup", start, 0, false, err) }()
	c, ok := s.remote.(backend.Cleaner)
	if !ok {
		return res, wrapErr("cleanup", s.path, errorf(ErrUnsupported, "this backend has no cleanup"))
	}
	var rep CheckReport
	if err := s.checkRemote(ctx, &rep); err != nil {
		return res, wrapErr("cleanup", s.path, err)
	}
	if !rep.OK() {
		return res, wrapErr("cleanup", s.path, errorf(ErrCorrupt, "the store is damaged (%d problem(s), first: %s); not cleaned", len(rep.Problems), rep.Problems[0]))
	}
	r, err := c.Cleanup(ctx)
	if err != nil {
		return res, wrapErr("cleanup", s.path, err)
	}
	res = CleanupResult{Before: r.Before, After: r.After, Reclaimed: r.Before - r.After, Records: rep.Records}
	s.logf(ctx, slog.LevelInfo, "cleaned", "dead_keys", r.Removed, "before", r.Before, "after", r.After)
	return res, nil
}

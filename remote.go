package psbase

// remote.go: stores that live in a remote backend instead of a local file —
// how Open and Create recognise a URL ("etcd://host:2379/jobs"), find the
// backend registered for its scheme (package internal/backend), and create
// or verify the store there through the storage seam. The record layer runs
// on a remote store unchanged; Cleanup, Backup and the metrics have remote
// paths of their own (cleanup_remote.go, backup_remote.go,
// metrics_remote.go); what needs the local file (group commit, warm reads,
// Restore, Recover) returns ErrUnsupported.
//
// May touch: nothing local (the backend's own connections only).

import (
	"context"
	"strings"

	"github.com/psbase/psbase/internal/backend"
	"github.com/psbase/psbase/internal/kv"
)

// remoteScheme returns the lower-cased scheme of a store URL ("etcd" of
// "etcd://…"), or "" for a path. A scheme is a letter then letters, digits,
// '+', '-' or '.', at least two characters (so that a Windows drive letter,
// "C://x", stays a path), followed by "://".
func remoteScheme(path string) string {
	i := strings.Index(path, "://")
	if i < 2 {
		return ""
	}
	for j, c := range path[:i] {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return ""
		}
	}
	return strings.ToLower(path[:i])
}

// openRemote opens the backend a store URL names and returns a Store on it
// (nothing is created or checked yet).
func openRemote(ctx context.Context, scheme, url string, cfg config) (*Store, error) {
	open, ok := backend.Lookup(scheme)
	if !ok {
		return nil, errorf(ErrUnsupported, "no backend for %s:// stores is linked into this program (import _ \"github.com/psbase/psbase/%s\"; registered: %v)",
			scheme, scheme, backend.Schemes())
	}
	if ctx == nil {
		ctx = context.Background()
	}
	b, name, err := open(ctx, backend.Config{URL: url, LockTimeout: cfg.lockTimeout, Logger: cfg.logger})
	if err != nil {
		return nil, err
	}
	return &Store{path: name, cfg: cfg, remote: b, log: cfg.logger, met: newMetrics()}, nil
}

// remoteName is a URL fit for an error message: scheme and hosts, never
// credentials (user:password@ is cut, and so is any query).
func remoteName(scheme, url string) string {
	rest := url[len(scheme)+3:]
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if slash := strings.Index(rest, "/"); slash < 0 || at < slash {
			rest = "…@" + rest[at+1:]
		}
	}
	return scheme + "://" + rest
}

// remoteTx runs fn in a raw transaction of the backend (no schema loaded:
// for creating and verifying the store).
func (s *Store) remoteTx(ctx context.Context, op string, write bool, fn func(kv.Tx) error) error {
	kt, err := s.remote.Begin(ctx, write, op)
	if err != nil {
		return err
	}
	if err := fn(kt); err != nil {
		_ = kt.Rollback()
		return err
	}
	if !write {
		return kt.Rollback()
	}
	return kt.Commit()
}

// createRemote makes the store in its backend, under the backend's lock:
// ErrExists if it is there, unless overwrite (then its buckets are deleted
// first, in the same transaction).
func (s *Store) createRemote(ctx context.Context, op string, sch *schema, overwrite, orOpen bool) error {
	return s.remoteTx(ctx, op, true, func(kt kv.Tx) error {
		if kt.Bucket(bucketMeta) != nil {
			switch {
			case orOpen:
				if _, err := checkFormat(kt, true); err != nil {
					return err
				}
				_, err := s.loadSchema(kt.Bucket(bucketMeta))
				return err
			case !overwrite:
				return errorf(ErrExists, "%s (use WithOverwrite to replace it)", s.path)
			}
			for _, b := range allBuckets {
				if kt.Bucket(b) != nil {
					if err := kt.DeleteBucket(b); err != nil {
						return err
					}
				}
			}
		}
		return initFormat(kt, sch)
	})
}

// verifyRemote checks that the store exists and is one this psbase reads.
func (s *Store) verifyRemote(ctx context.Context) error {
	return s.remoteTx(ctx, "open", false, func(kt kv.Tx) error {
		if kt.Bucket(bucketMeta) == nil {
			return errorf(ErrNotExist, "no store at %s (Create it, or Open with WithCreate)", s.path)
		}
		if _, err := checkFormat(kt, false); err != nil {
			return err
		}
		_, err := s.loadSchema(kt.Bucket(bucketMeta))
		return err
	})
}

// checkRemote is Check for a remote store: the logical checks (meta,
// schema, every record's CRC and decoding, count, sequence, indexes) on one
// snapshot; there is no file to walk.
func (s *Store) checkRemote(ctx context.Context, rep *CheckReport) error {
	return s.remoteTx(ctx, "check", false, func(kt kv.Tx) error {
		if kt.Bucket(bucketMeta) == nil {
			return errorf(ErrNotExist, "no store at %s", s.path)
		}
		return checkLogical(kt, rep)
	})
}

// destroyRemote deletes a remote store, if its backend can.
func (s *Store) destroyRemote(ctx context.Context) error {
	d, ok := s.remote.(backend.Destroyer)
	if !ok {
		return errorf(ErrUnsupported, "this backend cannot destroy a store")
	}
	return d.Destroy(ctx)
}

// errLocalOnly is the error of an operation that needs the local file.
func (s *Store) errLocalOnly(op string) error {
	return errorf(ErrUnsupported, "%s needs a local store; %s is remote", op, s.path)
}

// allBuckets are the top-level buckets a store may have.
var allBuckets = [][]byte{bucketMeta, bucketRecords, bucketIndexes, bucketRequests, bucketChanges}

// createOrOpenRemote is Create (orOpen false) and Open (orOpen true, with
// fields from WithCreate, or nil) of a store URL.
func createOrOpenRemote(ctx context.Context, op, scheme, url string, fields []Field, cfg config, orOpen bool) (*Store, error) {
	name := remoteName(scheme, url)
	var sch *schema
	if fields != nil || !orOpen {
		var err error
		if sch, err = newSchema(fields); err != nil {
			return nil, wrapErr(op, name, err)
		}
	}
	s, err := openRemote(ctx, scheme, url, cfg)
	if err != nil {
		return nil, wrapErr(op, name, err)
	}
	switch {
	case sch != nil:
		err = s.createRemote(ctx, op, sch, cfg.overwrite, orOpen)
	case !cfg.lazyOpen:
		err = s.verifyRemote(ctx)
	}
	if err != nil {
		_ = s.remote.Close()
		return nil, wrapErr(op, s.path, err)
	}
	return s, nil
}

package psbase

// locks_remote.go: LockHoldersContext — who holds a store's lock, for a
// local path (LockHolders) and for a store URL (the backend's own list of
// holders, read without taking the lock).
//
// May touch: nothing local; for a URL, the backend's connections only
// (reads of its lock and holder keys).

import (
	"context"

	"github.com/psbase/psbase/internal/backend"
)

// holderReporter is a backend that reports its holders in psbase's own
// type (the etcd backend does).
type holderReporter interface {
	Holders(ctx context.Context) ([]LockHolder, error)
}

// LockHoldersContext reports who holds and who waits for the lock of the
// store at path right now. A path is a local store, as for LockHolders (ctx
// is only checked before starting: the look-up does not block). A store URL
// ("etcd://host:2379/jobs") is asked through its backend, which must be
// linked into the program: the holder first, then the waiters in the order
// they will get the lock, each with its host, pid, operation, start time
// and Lease when it recorded them. It takes no lock, so it answers while
// another process holds the store; it connects but does not need the store
// to exist (no store, no holders). ctx bounds the connection and the reads.
// The options that apply are WithLogger; others are ignored. Errors name
// the store, without credentials; a backend that cannot list its holders
// gives ErrUnsupported.
func LockHoldersContext(ctx context.Context, path string, opts ...Option) ([]LockHolder, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	scheme := remoteScheme(path)
	if scheme == "" {
		if err := ctx.Err(); err != nil {
			return nil, wrapErr("locks", path, err)
		}
		return LockHolders(path)
	}
	name := remoteName(scheme, path)
	cfg := newConfig(opts)
	s, err := openRemote(ctx, scheme, path, cfg)
	if err != nil {
		return nil, wrapErr("locks", name, err)
	}
	defer s.remote.Close()
	hs, err := remoteHolders(ctx, s.remote)
	if err != nil {
		return nil, wrapErr("locks", s.path, err)
	}
	return hs, nil
}

// remoteHolders asks a backend for its holders, in whichever of the two
// forms it offers. A backend.Holder list has the holder first and the
// waiters after it (a remote lock is exclusive).
func remoteHolders(ctx context.Context, b backend.Backend) ([]LockHolder, error) {
	switch l := b.(type) {
	case holderReporter:
		return l.Holders(ctx)
	case backend.HolderLister:
		hs, err := l.Holders(ctx)
		if err != nil {
			return nil, err
		}
		var out []LockHolder
		for i, h := range hs {
			out = append(out, LockHolder{PID: h.PID, Exclusive: true, Waiting: i > 0,
				Op: h.Op, Host: h.Host, Since: h.Since, Lease: h.Lease})
		}
		return out, nil
	}
	return nil, errorf(ErrUnsupported, "this backend cannot list the holders of its lock")
}

package backend

// cleaner.go: the optional Cleanup of a remote backend.
//
// May touch: nothing (an interface).

import "context"

// CleanupResult is what a backend's Cleanup found and did.
type CleanupResult struct {
	Removed       int   // dead keys deleted
	Keys          int   // the store's keys before
	Before, After int64 // bytes of the store's keys and values, before and after
}

// Cleaner is a Backend that can remove its store's dead keys (what its
// format says is garbage), under the store's lock. It never touches
// another store's keys.
type Cleaner interface {
	Cleanup(ctx context.Context) (CleanupResult, error)
}

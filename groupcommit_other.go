//go:build !linux

package psbase

import "context"

// gcState: group commit needs futexes and OFD locks (Linux); elsewhere every
// write takes the direct path.
type gcState struct{}

const groupCommitSupported = false

func (g *gcState) close()                       {}
func (g *gcState) stats() (batches, ops uint64) { return 0, 0 }

func (s *Store) submit(context.Context, string, *gcOp) (*gcResult, error) {
	return nil, errNotCombinable
}

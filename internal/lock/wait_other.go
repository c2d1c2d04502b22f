//go:build !unix && !windows

package lock

import "errors"

// On platforms without file locks gofrs/flock returns errors.ErrUnsupported,
// which Acquire reports as ErrUnsupportedFS.

func isEINTR(error) bool { return false }

func isUnsupported(err error) bool { return errors.Is(err, errors.ErrUnsupported) }

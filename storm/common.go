package storm

import (
	"errors"
	"fmt"
	"runtime"
)

// errUnsupported is the error of features this OS lacks.
func errUnsupported() error {
	return fmt.Errorf("storm: process storms on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

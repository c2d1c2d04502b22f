package lock

import (
	"errors"

	"golang.org/x/sys/windows"
)

func lockIsEINTR(error) bool { return false }

func lockUnsupportedErr(err error) bool {
	return errors.Is(err, windows.ERROR_NOT_SUPPORTED) ||
		errors.Is(err, windows.ERROR_INVALID_FUNCTION) ||
		errors.Is(err, errors.ErrUnsupported)
}

package lock

import (
	"errors"

	"golang.org/x/sys/windows"
)

func isEINTR(error) bool { return false }

func isUnsupported(err error) bool {
	return errors.Is(err, windows.ERROR_NOT_SUPPORTED) ||
		errors.Is(err, windows.ERROR_INVALID_FUNCTION) ||
		errors.Is(err, errors.ErrUnsupported)
}

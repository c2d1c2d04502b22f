package etcdkv

// errors.go: the errors of the etcd backend, each wrapping a psbase
// sentinel (errors.Is) with a detail type (errors.As).
//
// May touch: nothing.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psbase/psbase"
)

// ErrLockLost: a commit was refused because this holder's lock key was gone
// (its session's lease expired while it was paused, partitioned or slow,
// and another holder may have written since). Nothing was written. It is
// matched by errors.Is together with psbase.ErrLockTimeout: the lock's time
// ran out; retrying the transaction is safe.
var ErrLockLost = errors.New("store lock lost before commit (session lease expired)")

// LockLostError is the error of a fenced commit.
type LockLostError struct {
	Store   string // the store's name
	LockKey string // the lock key this holder had
	Lease   int64  // its lease
}

func (e *LockLostError) Error() string {
	return fmt.Sprintf("%v: store %q, lock key %q (lease %x) no longer exists; nothing was written", ErrLockLost, e.Store, e.LockKey, e.Lease)
}

// Is matches ErrLockLost and psbase.ErrLockTimeout.
func (e *LockLostError) Is(target error) bool {
	return target == ErrLockLost || target == psbase.ErrLockTimeout
}

// TxTooLargeError is the error of a transaction above one of etcd's limits,
// found before anything was sent: it matches psbase.ErrTxTooLarge and names
// the limit (Limit is "operations" or "request bytes").
type TxTooLargeError struct {
	Limit string // "operations" (--max-txn-ops) or "request bytes" (--max-request-bytes)
	Have  int    // what the transaction needs
	Max   int    // what the server accepts (Config.MaxTxnOps / MaxRequestBytes)
}

func (e *TxTooLargeError) Error() string {
	flag := "--max-txn-ops"
	if e.Limit == "request bytes" {
		flag = "--max-request-bytes"
	}
	return fmt.Sprintf("%v: %d %s, the limit is %d (the server's %s); nothing was written", psbase.ErrTxTooLarge, e.Have, e.Limit, e.Max, flag)
}

// Is matches psbase.ErrTxTooLarge.
func (e *TxTooLargeError) Is(target error) bool { return target == psbase.ErrTxTooLarge }

// UnreachableError: no endpoint answered before the context or the dial
// timeout ended. It matches psbase.ErrUnavailable (unless the caller
// cancelled: then only context.Canceled) and unwraps to the cause
// (context.DeadlineExceeded, most often).
type UnreachableError struct {
	Endpoints []string
	Op        string
	Err       error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("etcd %s: no endpoint of [%s] answered: %v", e.Op, strings.Join(e.Endpoints, " "), e.Err)
}

// Unwrap returns the cause.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is matches psbase.ErrUnavailable, except for a wait the caller cancelled.
func (e *UnreachableError) Is(target error) bool {
	return target == psbase.ErrUnavailable && !errors.Is(e.Err, context.Canceled)
}

// AuthError: the cluster refused this client's credentials (a wrong user
// name or password, or a user without the permission). It matches
// psbase.ErrOption (the store's options are wrong) and never holds the
// password.
type AuthError struct {
	Store string // the store's name
	Err   error  // the server's error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("%v: etcd refused the credentials given for store %q (check the credentials file and the user's role): %v", psbase.ErrOption, e.Store, e.Err)
}

// Is matches psbase.ErrOption.
func (e *AuthError) Is(target error) bool { return target == psbase.ErrOption }

// Unwrap returns the server's error.
func (e *AuthError) Unwrap() error { return e.Err }

// authError turns the server's refusal of the credentials into an
// *AuthError; any other error is returned as it is.
func authError(store string, err error) error {
	if errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, rpctypes.ErrPermissionDenied) ||
		errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrInvalidAuthToken) ||
		status.Code(err) == codes.Unauthenticated || status.Code(err) == codes.PermissionDenied {
		return &AuthError{Store: store, Err: err}
	}
	return err
}

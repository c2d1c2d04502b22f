package etcdkv

// tlsprobe.go: why a TLS connection failed. gRPC retries a failed TLS
// handshake until the context ends and then says only "deadline exceeded";
// when Open finds no endpoint with TLS configured, one direct handshake
// with the same configuration names the cause (an unknown authority, a
// name the certificate does not cover, a server without TLS).
//
// May touch: one short TCP connection to each endpoint (a TLS handshake,
// nothing sent after it).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// tlsProbeTimeout bounds each handshake of the probe.
const tlsProbeTimeout = 2 * time.Second

// TLSError is an *UnreachableError whose cause a direct TLS handshake
// found; it unwraps to the UnreachableError.
type TLSError struct {
	Endpoint string
	Cause    error // the handshake's error
	Err      error // the *UnreachableError
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("%v (a TLS handshake with %s fails: %v)", e.Err, e.Endpoint, e.Cause)
}

// Unwrap returns the *UnreachableError.
func (e *TLSError) Unwrap() error { return e.Err }

// tlsCause returns err, or a *TLSError that adds the cause a direct
// handshake finds, when err is an *UnreachableError and TLS is configured.
func tlsCause(ctx context.Context, cfg Config, err error) error {
	var ue *UnreachableError
	if cfg.TLS == nil || !errors.As(err, &ue) {
		return err
	}
	for _, ep := range cfg.Endpoints {
		host := ep
		if u, perr := url.Parse(ep); perr == nil && u.Host != "" {
			host = u.Host
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tlsProbeTimeout)
		tc := cfg.TLS.Clone()
		if tc.ServerName == "" {
			if h, _, serr := net.SplitHostPort(host); serr == nil {
				tc.ServerName = strings.Trim(h, "[]")
			}
		}
		d := tls.Dialer{Config: tc}
		c, herr := d.DialContext(pctx, "tcp", host)
		cancel()
		if herr == nil {
			c.Close()
			continue
		}
		return &TLSError{Endpoint: host, Cause: herr, Err: err}
	}
	return err
}

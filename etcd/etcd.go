// Package etcd puts psbase stores on an etcd cluster. Import it for its
// side effect, once, in the program's main package:
//
//	import _ "github.com/psbase/psbase/etcd"
//
// and psbase.Open and psbase.Create accept store URLs of the form
//
//	etcd://HOST:PORT[,HOST:PORT...]/NAME[?ttl=5s&dial_timeout=5s&max_txn_ops=128&max_request_bytes=1572864&cacert=FILE&cert=FILE&key=FILE&credentials=FILE]
//
// NAME is the store: all its keys live under "NAME/", so many stores share
// a cluster. The query sets the session TTL (how long a holder that died
// holding the lock blocks the store), the dial timeout, and the server's
// limits as its flags set them (a transaction above them is ErrTxTooLarge,
// before anything is sent). psbase.WithLockTimeout bounds a writer's wait
// for the store's lock, as for a local store.
//
// TLS: cacert names the PEM file of the CA that signed the servers'
// certificates (with it, the client speaks TLS); cert and key, together,
// a client certificate and its key. Authentication (etcd's users and
// roles): credentials names a file holding one line USER:PASSWORD. The key
// and credentials files must be regular files that neither the group nor
// others may read (mode 0600 or stricter; not checked on Windows, where
// the file's ACL decides): a readable one is refused with ErrOption.
// Credentials in the URL itself are refused. No error or log line holds
// a password or a key: errors name the store as etcd://HOSTS/NAME and the
// files by path. A cluster that refuses the credentials is ErrOption.
//
// The record layer runs unchanged on etcd (see internal/etcdkv for the
// transactions, the fenced commits and the lock); what needs a local file
// (Restore, group commit, warm reads) returns psbase.ErrUnsupported.
//
// May touch: the store's keys on the cluster (through internal/etcdkv).
package etcd

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/internal/etcdkv"
	"github.com/psbase/psbase/internal/backend"
)

func init() { backend.Register("etcd", open) }

// open is the backend's Opener: it parses a store URL and connects.
func open(ctx context.Context, cfg backend.Config) (backend.Backend, string, error) {
	c, display, err := parseURL(cfg.URL)
	if err != nil {
		return nil, "", err
	}
	c.Logger = cfg.Logger
	c.LockTimeout = cfg.LockTimeout
	b, err := etcdkv.Open(ctx, c)
	if err != nil {
		return nil, "", err
	}
	return b, display, nil
}

// parseURL reads a store URL into a backend configuration and the URL's
// display form.
func parseURL(raw string) (etcdkv.Config, string, error) {
	var c etcdkv.Config
	i := strings.Index(raw, "://")
	if i < 0 || !strings.EqualFold(raw[:i], "etcd") {
		return c, "", fmt.Errorf("%w: not an etcd:// URL", psbase.ErrOption)
	}
	rest, query, _ := strings.Cut(raw[i+3:], "?")
	hosts, name, ok := strings.Cut(rest, "/")
	if strings.Contains(hosts, "@") {
		return c, "", fmt.Errorf("%w: credentials in an etcd:// URL are refused (the URL is not shown): name a file with ?credentials=FILE", psbase.ErrOption)
	}
	display := "etcd://" + hosts + "/" + name
	if !ok || name == "" {
		return c, "", fmt.Errorf("%w: %s names no store: etcd://HOST:PORT/NAME", psbase.ErrOption, display)
	}
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return c, "", fmt.Errorf("%w: %s has an empty endpoint", psbase.ErrOption, display)
		}
		c.Endpoints = append(c.Endpoints, h)
	}
	c.Name = name
	q, err := url.ParseQuery(query)
	if err != nil {
		return c, "", fmt.Errorf("%w: %s: query: %v", psbase.ErrOption, display, err)
	}
	files := map[string]string{}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "cacert", "cert", "key", "credentials":
			if v == "" {
				return c, "", fmt.Errorf("%w: %s: %s= names no file", psbase.ErrOption, display, k)
			}
			files[k] = v
		case "ttl", "dial_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return c, "", fmt.Errorf("%w: %s: %s=%q is not a positive duration", psbase.ErrOption, display, k, v)
			}
			if k == "ttl" {
				c.SessionTTL = d
			} else {
				c.DialTimeout = d
			}
		case "max_txn_ops", "max_request_bytes":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return c, "", fmt.Errorf("%w: %s: %s=%q is not a positive number", psbase.ErrOption, display, k, v)
			}
			if k == "max_txn_ops" {
				c.MaxTxnOps = n
			} else {
				c.MaxRequestBytes = n
			}
		default:
			return c, "", fmt.Errorf("%w: %s: unknown parameter %q (ttl, dial_timeout, max_txn_ops, max_request_bytes, cacert, cert, key, credentials)", psbase.ErrOption, display, k)
		}
	}
	if err := loadSecrets(&c, display, files); err != nil {
		return c, "", err
	}
	return c, display, nil
}

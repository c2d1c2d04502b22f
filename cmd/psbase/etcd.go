//go:build !noetcd

package main

// etcd.go: etcd:// store URLs (psbase create etcd://127.0.0.1:2379/jobs ...).
// A build with -tags noetcd leaves the etcd client out (a smaller binary
// that starts faster, for cron jobs on local stores only); store URLs then
// exit 15 (ErrUnsupported: no backend for the scheme).
//
// May touch: nothing (it registers the scheme).

import _ "github.com/psbase/psbase/etcd"

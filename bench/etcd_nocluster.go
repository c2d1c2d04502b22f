//go:build noetcd

package main

// etcd_nocluster.go: the local workers' binary (build tag noetcd, see
// workers.go) has no etcd: it never starts a cluster and runs no etcd
// worker.
//
// May touch: nothing.

import (
	"context"
	"errors"
)

// withEtcd: this binary has no etcd.
const withEtcd = false

var errNoEtcd = errors.New("this psbench binary was built without etcd (tag noetcd)")

func etcdMain() {}

type etcdClusters map[string]*struct{}

func startEtcd(systems []string, _ string, _ func(string, ...any)) (etcdClusters, error) {
	for _, sys := range systems {
		if isEtcd(sys) {
			return nil, errNoEtcd
		}
	}
	return etcdClusters{}, nil
}

func (cs etcdClusters) close() {}

func (cs etcdClusters) storeURL(string, string) string { return "" }

type memberCounters struct{}

func readCounters(context.Context, *struct{}) (memberCounters, error) {
	return memberCounters{}, errNoEtcd
}

func newEtcdDisk(memberCounters, memberCounters, int) *etcdDisk { return nil }

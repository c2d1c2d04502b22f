package etcdkv

// limits.go: etcd's per-transaction limits, checked before a commit is
// sent, so a transaction above them fails whole instead of at the server.
//
// May touch: nothing.

import (
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// raftMargin covers what the server adds around a Txn before it compares the
// size with --max-request-bytes (the request's header in the Raft entry: an
// ID, and a user name and auth revision when auth is on).
const raftMargin = 64

// checkLimits returns a *TxTooLargeError if ops (plus the fence compare)
// is above the server's limits. The operation count is the server's
// (success operations; the compares and the failure branch count apart);
// the size is the protobuf size of the Raft request the server builds.
func (b *Backend) checkLimits(ops []wop, h *held) error {
	if len(ops) > b.cfg.MaxTxnOps {
		return &TxTooLargeError{Limit: "operations", Have: len(ops), Max: b.cfg.MaxTxnOps}
	}
	req := &pb.TxnRequest{}
	if h != nil {
		req.Compare = []*pb.Compare{{
			Key:         []byte(h.m.Key()),
			Target:      pb.Compare_CREATE,
			Result:      pb.Compare_EQUAL,
			TargetUnion: &pb.Compare_CreateRevision{CreateRevision: math.MaxInt64},
		}}
	}
	for _, o := range ops {
		var r *pb.RequestOp
		switch {
		case !o.del:
			r = &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(o.key), Value: o.val}}}
		default:
			dr := &pb.DeleteRangeRequest{Key: []byte(o.key)}
			if o.end != "" {
				dr.RangeEnd = []byte(o.end)
			}
			r = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: dr}}
		}
		req.Success = append(req.Success, r)
	}
	raft := &pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: math.MaxUint64}, Txn: req}
	size := proto.Size(raft) + raftMargin
	if size > b.cfg.MaxRequestBytes {
		return &TxTooLargeError{Limit: "request bytes", Have: size, Max: b.cfg.MaxRequestBytes}
	}
	return nil
}

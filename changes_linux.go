//go:build linux

package psbase

// changes_linux.go: the change log's part in group commit's combiner
// (combine.go, Linux only).
//
// May touch: nothing but the combiner's transactions it is handed.

import bolt "go.etcd.io/bbolt"

// weakLogFirst is the negative control weak.feedLogFirst (combine.go): the
// batch's entry is committed in a transaction of its own, before the data
// (gcStage "logged" runs between the two), and the batch is then applied
// again on the fresh transaction returned, which commits without an entry.
// A combiner killed between the two commits leaves a revision listing
// changes that never happened: what the feed's storms must catch.
func (s *Store) weakLogFirst(tx *Tx, h *boltFile, others int) (*Tx, error) {
	entry := encodeEntry(tx.feed.set, tx.schemaChanged)
	_ = tx.finish(false)
	lt, err := s.combinerTx(h)
	if err != nil {
		return nil, err
	}
	if err := appendLog(lt.kt, lt.meta, entry, changeKeep{}); err != nil {
		_ = lt.finish(false)
		return nil, err
	}
	if err := lt.finish(true); err != nil {
		return nil, err
	}
	if s.cfg.weak.gcStage != nil {
		s.cfg.weak.gcStage("logged", others)
	}
	nt, err := s.combinerTx(h)
	if err != nil {
		return nil, err
	}
	nt.feed.logged = true
	return nt, nil
}

func (c combinerKV) boltHandle() (*bolt.Tx, *boltFile) { return c.BTx, c.h }

package psbase

// commitguard.go: a check of the local backend's file just before a write
// commits. bbolt frees the previous freelist page at every commit, page by
// page up to its overflow count, and trusts that count: on a damaged file
// whose freelist page (the last page, typically) claims billions of
// overflow pages, the commit loops for hours while its memory grows
// (FuzzDamagedStore found it once the change log moved the freelist to the
// end of its store). The count must stay below the file's high-water mark.
//
// May touch: the database file, read (two meta page headers) through the
// descriptor the transaction's bbolt handle uses.

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/kv"
)

// boltBacked is a transaction of the local backend: its bbolt transaction
// and the handle it runs on.
type boltBacked interface {
	boltHandle() (*bolt.Tx, *boltFile)
}

func (t *localTx) boltHandle() (*bolt.Tx, *boltFile) { return t.BTx, t.h }

// The meta page's fields (bbolt v1, internal/common.Meta, after the 16-byte
// page header), in the machine's byte order, which bbolt writes.
const (
	metaFreelistAt = 16 + 32
	metaPgidAt     = 16 + 40
	metaTxidAt     = 16 + 48
	noFreelist     = ^uint64(0)
)

// freelistFits refuses, with ErrCorrupt, to commit a write whose freelist
// page claims overflow pages beyond the end of the file. The caller runs it
// with faults turned into panics (Tx.finish).
func freelistFits(kt kv.Tx) error {
	b, ok := kt.(boltBacked)
	if !ok {
		return nil
	}
	btx, h := b.boltHandle()
	if btx == nil || h == nil || h.file == nil || !btx.Writable() {
		return nil
	}
	ps := int64(btx.DB().Info().PageSize)
	from := uint64(btx.ID() - 1) // the meta this transaction began from
	for _, off := range []int64{0, ps} {
		var m [metaTxidAt + 8]byte
		if _, err := h.file.ReadAt(m[:], off); err != nil {
			return nil // bbolt's own commit reports what is wrong with the file
		}
		if binary.NativeEndian.Uint64(m[metaTxidAt:]) != from {
			continue
		}
		fl, hw := binary.NativeEndian.Uint64(m[metaFreelistAt:]), binary.NativeEndian.Uint64(m[metaPgidAt:])
		if fl == noFreelist {
			return nil
		}
		info, err := btx.Page(int(fl))
		if err != nil || info == nil {
			return nil
		}
		if fl+uint64(info.OverflowCount) >= hw {
			return errorf(ErrCorrupt, "the freelist page %d claims %d overflow pages, past the end of the file (%d pages): nothing was written; run Check", fl, info.OverflowCount, hw)
		}
		return nil
	}
	return nil
}

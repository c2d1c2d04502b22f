package psbase

// commitguard.go: a check of the local backend's file just before a write
// commits. bbolt frees the previous freelist page at every commit, page by
// page up to its overflow count, and trusts that count: on a damaged file
// whose freelist page (the last page, typically) claims billions of
// overflow pages, the commit loops for hours while its memory grows
// (FuzzDamagedStore found it once the change log moved the freelist to the
// end of its store). The count must stay below the file's high-water mark.
//
// May touch: the database file, read (two meta page headers and the
// freelist page) through the descriptor the transaction's bbolt handle uses.

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/boltkv"
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
		return freeIDsFit(h, fl, uint64(info.OverflowCount), hw, ps)
	}
	return nil
}

// commitFits runs every check of this file on the write kt is about to
// commit: the freelist (freelistFits) and the other pages the commit frees
// (boltkv.FreesFit). The caller runs it with faults turned into panics.
func commitFits(kt kv.Tx) error {
	if err := freelistFits(kt); err != nil {
		return err
	}
	b, ok := kt.(boltBacked)
	if !ok {
		return nil
	}
	if btx, _ := b.boltHandle(); btx != nil {
		if err := boltkv.FreesFit(btx); err != nil {
			return errorf(ErrCorrupt, "%v: nothing was written; run Check", err)
		}
	}
	return nil
}

// freeIDsFit refuses, with ErrCorrupt, a freelist that lists a page outside
// [2, hw). bbolt allocates the freelist's own new page from that list after
// the tree's pages (whose ids it checks against the high-water mark) and
// writes it without that check: a damaged id sends the write past the end
// of the file, to a sparse hole or, past the file system's limit, to EFBIG,
// which would read as a full disk (FuzzDamagedStore found it). The list is
// read from the page bbolt loaded it from, in page-sized pieces on the stack.
func freeIDsFit(h *boltFile, fl, overflow, hw uint64, ps int64) error {
	var hdr [16]byte
	at := int64(fl) * ps
	if _, err := h.file.ReadAt(hdr[:], at); err != nil {
		return nil // bbolt's own commit reports what is wrong with the file
	}
	n, start := uint64(binary.NativeEndian.Uint16(hdr[10:])), at+16
	if n == 0xFFFF { // the count is in the first element (bbolt's freelist.write)
		var c [8]byte
		if _, err := h.file.ReadAt(c[:], start); err != nil {
			return nil
		}
		n, start = binary.NativeEndian.Uint64(c[:]), start+8
	}
	if room := (uint64(overflow+1)*uint64(ps) - uint64(start-at)) / 8; n > room {
		return errorf(ErrCorrupt, "the freelist page %d claims %d free pages, more than its %d page(s) hold: nothing was written; run Check", fl, n, overflow+1)
	}
	var buf [4096]byte
	for off := start; n > 0; {
		k := min(n, uint64(len(buf)/8))
		if _, err := h.file.ReadAt(buf[:k*8], off); err != nil {
			return nil
		}
		for i := range k {
			if id := binary.NativeEndian.Uint64(buf[i*8:]); id < 2 || id >= hw {
				return errorf(ErrCorrupt, "the freelist page %d lists page %d, outside the file's pages 2..%d: nothing was written; run Check", fl, id, hw-1)
			}
		}
		n, off = n-k, off+int64(k*8)
	}
	return nil
}

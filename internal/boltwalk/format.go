// Package boltwalk reads a bbolt (go.etcd.io/bbolt v1.x) database file
// without bbolt and without mmap, with explicit limits, so that psbase can
// check and salvage a store on any file — damaged, truncated or hostile —
// without crashing, recursing without bound or allocating without bound.
//
// bbolt's own Tx.Check runs in a goroutine of its own, trusts page headers
// and recurses; on a damaged file it can crash the process, try to allocate
// terabytes for a bogus overflow count, or overflow the stack on a B+tree
// cycle. This package instead reads pages with plain ReadAt into byte
// slices, decodes them with encoding/binary (little-endian, the layout bbolt
// uses on every platform psbase supports), validates every offset before it
// is used, walks trees with an explicit stack and keeps a visited set, so a
// page reachable twice or a cycle is reported, never followed.
//
// Check walks the whole file (both metas, every bucket tree, the freelist)
// and reports every problem found, like bbolt's Tx.Check. Leaf visits the
// entries of one bucket, skipping damaged subtrees, for salvage. Sequence
// reads a bucket's sequence number. Only when Check reports no problems is
// it reasonable to open the file with bbolt.
//
// The package uses only the standard library.
package boltwalk

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
)

// On-disk layout of bbolt v1 (go.etcd.io/bbolt internal/common).
const (
	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	branchElemSize = 16 // pos u32, ksize u32, pgid u64
	leafElemSize   = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHdrSize  = 16 // root pgid u64, sequence u64
	metaSize       = 64 // see decodeMeta
	metaSumOffset  = 56 // the checksum covers meta bytes [0, 56)
	pgidSize       = 8

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10

	bucketLeafFlag = 0x01

	metaMagic   = 0xED0CDAED
	metaVersion = 2

	// pgidNoFreelist in meta.freelist means the freelist is not persisted
	// (DB.NoFreelistSync); free pages are then the unreachable ones.
	pgidNoFreelist = 0xFFFFFFFFFFFFFFFF

	// freelistCountEscape in a freelist page's count means the first
	// element holds the real count.
	freelistCountEscape = 0xFFFF

	// minPageSize and maxPageSize bound the page size a meta may declare.
	// bbolt itself probes for page sizes from 1 KiB to 16 MiB.
	minPageSize = 1024
	maxPageSize = 1 << 24
)

var le = binary.LittleEndian

// pageHeader is the 16-byte header at the start of every page.
type pageHeader struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func decodePageHeader(b []byte) pageHeader {
	_ = b[pageHeaderSize-1]
	return pageHeader{
		id:       le.Uint64(b[0:]),
		flags:    le.Uint16(b[8:]),
		count:    le.Uint16(b[10:]),
		overflow: le.Uint32(b[12:]),
	}
}

func typeName(flags uint16) string {
	switch flags {
	case flagBranch:
		return "branch"
	case flagLeaf:
		return "leaf"
	case flagMeta:
		return "meta"
	case flagFreelist:
		return "freelist"
	}
	return fmt.Sprintf("unknown<%02x>", flags)
}

// meta is the body of a meta page (pages 0 and 1), right after the header.
type meta struct {
	magic    uint32
	version  uint32
	pageSize uint32
	flags    uint32
	root     uint64 // root bucket's root page
	rootSeq  uint64 // root bucket's sequence
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use or free
	txid     uint64
	checksum uint64
}

// decodeMeta decodes b, which must hold at least metaSize bytes.
func decodeMeta(b []byte) meta {
	_ = b[metaSize-1]
	return meta{
		magic:    le.Uint32(b[0:]),
		version:  le.Uint32(b[4:]),
		pageSize: le.Uint32(b[8:]),
		flags:    le.Uint32(b[12:]),
		root:     le.Uint64(b[16:]),
		rootSeq:  le.Uint64(b[24:]),
		freelist: le.Uint64(b[32:]),
		pgid:     le.Uint64(b[40:]),
		txid:     le.Uint64(b[48:]),
		checksum: le.Uint64(b[56:]),
	}
}

// validateMeta reports why the meta body b is unusable, like bbolt's
// Meta.Validate, or "" if it is usable.
func validateMeta(b []byte) string {
	m := decodeMeta(b)
	if m.magic != metaMagic {
		return "invalid magic"
	}
	if m.version != metaVersion {
		return fmt.Sprintf("version %d, want %d", m.version, metaVersion)
	}
	h := fnv.New64a()
	_, _ = h.Write(b[:metaSumOffset])
	if m.checksum != h.Sum64() {
		return "checksum mismatch"
	}
	return ""
}

// branchElem is one element of a branch page: the first key of a child
// and the child's page id.
type branchElem struct {
	key  []byte
	pgid uint64
}

// leafElem is one element of a leaf page.
type leafElem struct {
	flags uint32
	key   []byte
	value []byte
}

// decodeElems decodes the count elements of the page in buf (header at
// buf[0:16]), checking that the element array and every key and value lie
// inside buf. On failure it returns a description of the first bad element.
// Exactly one of the returned slices is non-nil on success for count > 0.
func decodeElems(buf []byte, flags uint16, count int) ([]branchElem, []leafElem, string) {
	n := uint64(len(buf))
	if uint64(pageHeaderSize)+uint64(count)*16 > n {
		return nil, nil, fmt.Sprintf("%d elements overrun the page (%d bytes)", count, n)
	}
	switch flags {
	case flagBranch:
		out := make([]branchElem, count)
		for i := range out {
			off := uint64(pageHeaderSize + i*branchElemSize)
			e := buf[off : off+branchElemSize]
			pos, ksize := uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:]))
			if off+pos+ksize > n {
				return nil, nil, fmt.Sprintf("branch element %d: key [%d,+%d) overruns the page (%d bytes)", i, off+pos, ksize, n)
			}
			out[i] = branchElem{key: buf[off+pos : off+pos+ksize : off+pos+ksize], pgid: le.Uint64(e[8:])}
		}
		return out, nil, ""
	case flagLeaf:
		out := make([]leafElem, count)
		for i := range out {
			off := uint64(pageHeaderSize + i*leafElemSize)
			e := buf[off : off+leafElemSize]
			fl, pos := le.Uint32(e[0:]), uint64(le.Uint32(e[4:]))
			ksize, vsize := uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
			if off+pos+ksize+vsize > n {
				return nil, nil, fmt.Sprintf("leaf element %d: key/value [%d,+%d+%d) overrun the page (%d bytes)", i, off+pos, ksize, vsize, n)
			}
			k := off + pos
			v := k + ksize
			out[i] = leafElem{flags: fl, key: buf[k:v:v], value: buf[v : v+vsize : v+vsize]}
		}
		return nil, out, ""
	}
	return nil, nil, fmt.Sprintf("unexpected page type %s", typeName(flags))
}

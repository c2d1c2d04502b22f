package boltwalk

// frees.go: the pages a bbolt write transaction is about to free, checked
// before bbolt frees them. bbolt frees a page together with every page of
// its overflow count, one id at a time, and trusts the count: a damaged
// count of billions on a page a write rewrites loops for minutes while the
// freelist's memory grows without bound (found on a store fresh from
// Cleanup, whose freelist has no page past the damaged one to stop the
// loop with "page already freed"). A count is sound only if the page and
// its overflow end below the high-water mark.
//
// May touch: nothing but the bytes it is handed (the caller's view of the
// file as bbolt mapped it).

import (
	"errors"
	"fmt"
)

// ErrDamaged is wrapped by the errors of SpanFits and TreeFits: a page that
// bbolt would free cannot be what it claims.
var ErrDamaged = errors.New("damaged page")

// SpanFits returns an error wrapping ErrDamaged unless page id of the mapped
// file m (page size ps, high-water mark hw pages) lies in [2, hw) with its
// overflow pages.
func SpanFits(m []byte, ps int, hw, id uint64) error {
	if id < 2 || id >= hw {
		return fmt.Errorf("%w: page %d is outside the file's pages 2..%d", ErrDamaged, id, hw-1)
	}
	off := id * uint64(ps)
	if off+pageHeaderSize > uint64(len(m)) {
		return fmt.Errorf("%w: page %d lies past the %d bytes of the mapped file", ErrDamaged, id, len(m))
	}
	if ov := uint64(le.Uint32(m[off+12:])); ov >= hw-id {
		return fmt.Errorf("%w: page %d claims %d overflow pages, past the end of the file (%d pages)", ErrDamaged, id, ov, hw)
	}
	return nil
}

// TreeFits checks every page of the bucket tree rooted at page root, and,
// if nested, of the buckets nested in it (bbolt's DeleteBucket frees them
// all): each must pass SpanFits and be a branch or a leaf whose elements
// lie inside it. It visits at most hw pages (a cycle ends there, as damage).
func TreeFits(m []byte, ps int, hw, root uint64, nested bool) error {
	var room [64]uint64 // a tree deeper or wider than this grows onto the heap
	stack := append(room[:0], root)
	for visits := uint64(0); len(stack) > 0; visits++ {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visits >= hw {
			return fmt.Errorf("%w: the tree under page %d reaches more pages than the file holds (a cycle)", ErrDamaged, root)
		}
		if err := SpanFits(m, ps, hw, id); err != nil {
			return err
		}
		off := id * uint64(ps)
		end := min(off+(uint64(le.Uint32(m[off+12:]))+1)*uint64(ps), uint64(len(m)))
		flags, count := le.Uint16(m[off+8:]), uint64(le.Uint16(m[off+10:]))
		if off+pageHeaderSize+count*16 > end {
			return fmt.Errorf("%w: page %d claims %d elements, more than it holds", ErrDamaged, id, count)
		}
		for i := range count {
			e := off + pageHeaderSize + i*16
			switch flags {
			case flagBranch:
				stack = append(stack, le.Uint64(m[e+8:]))
			case flagLeaf:
				if !nested || le.Uint32(m[e:])&bucketLeafFlag == 0 {
					continue
				}
				v := e + uint64(le.Uint32(m[e+4:])) + uint64(le.Uint32(m[e+8:]))
				if v+bucketHdrSize > end {
					return fmt.Errorf("%w: page %d: a nested bucket's header lies outside the page", ErrDamaged, id)
				}
				if r := le.Uint64(m[v:]); r != 0 { // 0: inline, no pages of its own
					stack = append(stack, r)
				}
			default:
				return fmt.Errorf("%w: page %d of a bucket tree is a %s page", ErrDamaged, id, typeName(flags))
			}
		}
	}
	return nil
}

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
// lie inside it. It takes at most hw pages onto its stack (a cycle or a page
// listed twice ends there, as damage).
func TreeFits(m []byte, ps int, hw, root uint64, nested bool) error {
	var room [64]uint64 // a tree deeper or wider than this grows onto the heap
	stack := append(room[:0], root)
	// A sound tree pushes each of its pages once: more pushes than the file
	// has pages is a cycle or a page listed twice, found before the stack
	// can grow past hw entries.
	pushes := uint64(1)
	push := func(id uint64) bool {
		if pushes++; pushes > hw {
			return false
		}
		stack = append(stack, id)
		return true
	}
	cycle := func() error {
		return fmt.Errorf("%w: the tree under page %d reaches more pages than the file holds (a cycle)", ErrDamaged, root)
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		off, end, flags, count, err := spanElems(m, ps, hw, id)
		if err != nil {
			return err
		}
		for i := range count {
			e := off + pageHeaderSize + i*16
			switch flags {
			case flagBranch:
				if !push(le.Uint64(m[e+8:])) {
					return cycle()
				}
			case flagLeaf:
				if !nested || le.Uint32(m[e:])&bucketLeafFlag == 0 {
					continue
				}
				v := e + uint64(le.Uint32(m[e+4:])) + uint64(le.Uint32(m[e+8:]))
				if v+bucketHdrSize > end {
					return fmt.Errorf("%w: page %d: a nested bucket's header lies outside the page", ErrDamaged, id)
				}
				if r := le.Uint64(m[v:]); r != 0 && !push(r) { // 0: inline, no pages of its own
					return cycle()
				}
			default:
				return fmt.Errorf("%w: page %d of a bucket tree is a %s page", ErrDamaged, id, typeName(flags))
			}
		}
	}
	return nil
}

// EdgeChild returns the first (or, if last, the last) child of branch page
// id of the mapped file m, after SpanFits on id; 0 if id is not a branch or
// has no children.
func EdgeChild(m []byte, ps int, hw, id uint64, last bool) (uint64, error) {
	off, _, flags, count, err := spanElems(m, ps, hw, id)
	if err != nil || flags != flagBranch || count == 0 {
		return 0, err
	}
	i := uint64(0)
	if last {
		i = count - 1
	}
	return le.Uint64(m[off+pageHeaderSize+i*16+8:]), nil
}

// spanElems runs SpanFits on page id and returns its offset, the end of its
// span in m, its flags and element count, after checking that the elements
// lie inside the span.
func spanElems(m []byte, ps int, hw, id uint64) (off, end uint64, flags uint16, count uint64, err error) {
	if err := SpanFits(m, ps, hw, id); err != nil {
		return 0, 0, 0, 0, err
	}
	off = id * uint64(ps)
	end = min(off+(uint64(le.Uint32(m[off+12:]))+1)*uint64(ps), uint64(len(m)))
	flags, count = le.Uint16(m[off+8:]), uint64(le.Uint16(m[off+10:]))
	if off+pageHeaderSize+count*16 > end {
		return 0, 0, 0, 0, fmt.Errorf("%w: page %d claims %d elements, more than it holds", ErrDamaged, id, count)
	}
	return off, end, flags, count, nil
}

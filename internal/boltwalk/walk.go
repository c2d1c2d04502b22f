package boltwalk

// May touch: nothing but the bytes it is handed (a bbolt file read into memory or mapped by the caller).

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Default limits, used for zero fields of Limits.
const (
	// DefaultMaxPages bounds the pages a file may declare (its high-water
	// mark, clamped to the file's size): 2^27 pages is 512 GiB of 4 KiB
	// pages, and the walk's bitmaps for it take 32 MiB.
	DefaultMaxPages = 1 << 27
	// DefaultMaxDepth bounds the depth of one bucket's B+tree and the
	// nesting of buckets. bbolt trees are rarely deeper than 10.
	DefaultMaxDepth = 64
	// DefaultMaxProblems bounds the problems a Report keeps.
	DefaultMaxProblems = 1000
	// DefaultMaxPageSpan bounds the bytes of one page including its
	// overflow pages, i.e. the largest buffer the walk allocates at once.
	DefaultMaxPageSpan = 64 << 20
)

// Limits bound the walk; zero (or negative) fields take the defaults
// DefaultMaxPages, DefaultMaxDepth, DefaultMaxProblems and
// DefaultMaxPageSpan.
//
// Memory used by a walk is O(min(MaxPages, file pages)) bits for the
// visited and free sets plus, at any moment, the page buffers on the path
// from a tree's root to the current page (each at most MaxPageSpan bytes,
// and never more in total than the file, since no page is read twice).
// Time is linear in the bytes of the pages reached.
type Limits struct {
	// MaxPages is the largest number of pages the walk will track. A file
	// whose high-water mark (clamped to its size) exceeds it is reported
	// and not walked.
	MaxPages int64
	// MaxDepth is the deepest B+tree (root at depth 1) and the deepest
	// bucket nesting (top-level buckets at 1) the walk follows; deeper
	// subtrees are reported and skipped.
	MaxDepth int
	// MaxProblems is the most problems a Report keeps; further problems
	// set Report.Truncated.
	MaxProblems int
	// MaxPageSpan is the most bytes one page, including its overflow
	// pages, may span; larger pages are reported and not read.
	MaxPageSpan int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxPages <= 0 {
		l.MaxPages = DefaultMaxPages
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxProblems <= 0 {
		l.MaxProblems = DefaultMaxProblems
	}
	if l.MaxPageSpan <= 0 {
		l.MaxPageSpan = DefaultMaxPageSpan
	}
	return l
}

// Problem is one inconsistency found in the file.
type Problem struct {
	// Page is the page the problem is about; for problems about the file
	// as a whole (e.g. no valid meta) it is 0 and What says so.
	Page uint64
	// Bucket is the path of the bucket whose tree holds Page, with
	// components joined by "/" (e.g. "records" or "meta/x"; components
	// that are not printable UTF-8 without "/" are written as 0x-hex);
	// "" for the root bucket, the metas, the freelist and the file.
	Bucket string
	// What describes the problem.
	What string
}

// String formats p like bbolt's check messages, e.g.
// `bucket "records": page 7: unreachable unfreed`.
func (p Problem) String() string {
	if p.Bucket != "" {
		return fmt.Sprintf("bucket %q: page %d: %s", p.Bucket, p.Page, p.What)
	}
	return fmt.Sprintf("page %d: %s", p.Page, p.What)
}

// Report is the result of a walk.
type Report struct {
	// PageSize is the page size of the meta in use (0 if there is none).
	PageSize int
	// TxID is the transaction id of the meta in use.
	TxID uint64
	// HighWater is the meta's high-water mark: pages [0, HighWater) are
	// each either reachable or free in a sound file.
	HighWater uint64
	// Pages counts the distinct pages reached: the two metas, the
	// freelist page(s) and every page (overflow included) of every bucket
	// tree walked. For Check on a sound file Pages+Free == HighWater.
	Pages int64
	// Free counts the free pages: the distinct valid ids in the freelist
	// page or, when the freelist is not persisted (NoFreelistSync), the
	// pages below HighWater that are not reachable. Leaf leaves it 0.
	Free int64
	// Sequence is the sequence number (NextSequence) of the bucket a Leaf
	// or Sequence call was about; Check sets the root bucket's.
	Sequence uint64
	// Problems lists inconsistencies, at most Limits.MaxProblems.
	Problems []Problem
	// Truncated reports that more problems were found than kept.
	Truncated bool
	// Notes lists oddities bbolt tolerates, so they do not make a file
	// corrupt: chiefly one meta page being invalid while the other is
	// valid (bbolt then uses the valid one, as does the walk).
	Notes []string
}

// OK reports whether the walk found no problems. Notes do not count.
func (r *Report) OK() bool { return len(r.Problems) == 0 && !r.Truncated }

// bitmap is a fixed-size set of page ids.
type bitmap []uint64

func newBitmap(n uint64) bitmap    { return make(bitmap, (n+63)/64) }
func (b bitmap) has(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitmap) set(i uint64)      { b[i/64] |= 1 << (i % 64) }

// walker holds the state of one walk over one file.
type walker struct {
	r    io.ReaderAt
	size int64
	lim  Limits
	rep  *Report

	m        meta   // the meta in use
	pageSize uint64 // m.pageSize
	hwm      uint64 // m.pgid
	npages   uint64 // pages tracked: min(hwm, pages in the file)
	reached  bitmap // pages reached so far
	free     bitmap // pages in the freelist (Check only)
	freeOK   bool   // free holds a persisted freelist

	// inlineBudget is the bytes of inline bucket pages the walk may still
	// decode. Inline pages of a sound file are disjoint parts of its pages,
	// so they total less than the file; nested inline buckets whose values
	// overlap could otherwise make the work exponential in their depth.
	inlineBudget int64
}

func newWalker(r io.ReaderAt, size int64, lim Limits) *walker {
	return &walker{r: r, size: size, lim: lim.withDefaults(), rep: &Report{}, inlineBudget: size}
}

func (w *walker) problem(page uint64, bucket string, format string, args ...any) {
	if len(w.rep.Problems) >= w.lim.MaxProblems {
		w.rep.Truncated = true
		return
	}
	w.rep.Problems = append(w.rep.Problems, Problem{Page: page, Bucket: bucket, What: fmt.Sprintf(format, args...)})
}

// readAt fills b from offset off, which the caller has checked lies with b
// inside the file.
func (w *walker) readAt(b []byte, off int64) error {
	n, err := w.r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readMetaBody reads the meta body of the page at off and validates it.
func (w *walker) readMetaBody(off int64) ([]byte, string) {
	if off < 0 || off > w.size-pageHeaderSize-metaSize {
		return nil, "beyond file end"
	}
	b := make([]byte, pageHeaderSize+metaSize)
	if err := w.readAt(b, off); err != nil {
		return nil, "read error: " + err.Error()
	}
	body := b[pageHeaderSize:]
	if why := validateMeta(body); why != "" {
		return nil, why
	}
	ps := decodeMeta(body).pageSize
	if ps < minPageSize || ps > maxPageSize || int64(ps) > w.lim.MaxPageSpan {
		return nil, fmt.Sprintf("page size %d out of range", ps)
	}
	return body, ""
}

// open chooses the meta to use, as bbolt does, and sets up the page sets.
// It reports false if the file cannot be walked at all.
func (w *walker) open() bool {
	body0, why0 := w.readMetaBody(0)
	var body1 []byte
	why1 := "not found"
	if body0 != nil {
		body1, why1 = w.readMetaBody(int64(decodeMeta(body0).pageSize))
	} else {
		// Like bbolt, probe for the second meta at every page size.
		for ps := int64(minPageSize); ps <= maxPageSize; ps *= 2 {
			b, why := w.readMetaBody(ps)
			if b != nil && int64(decodeMeta(b).pageSize) == ps {
				body1, why1 = b, ""
				break
			}
			if why == "beyond file end" {
				break
			}
		}
	}
	var body []byte
	switch {
	case body0 == nil && body1 == nil:
		w.problem(0, "", "no valid meta page (meta 0: %s; meta 1: %s)", why0, why1)
		return false
	case body1 == nil:
		body = body0
		w.rep.Notes = append(w.rep.Notes, fmt.Sprintf("meta page 1: %s; using meta page 0", why1))
	case body0 == nil:
		body = body1
		w.rep.Notes = append(w.rep.Notes, fmt.Sprintf("meta page 0: %s; using meta page 1", why0))
	default:
		m0, m1 := decodeMeta(body0), decodeMeta(body1)
		body = body0
		if m1.txid > m0.txid {
			body = body1
		}
		if m0.pageSize != m1.pageSize {
			w.problem(1, "", "meta pages disagree on the page size (%d, %d)", m0.pageSize, m1.pageSize)
		}
	}
	w.m = decodeMeta(body)
	w.pageSize = uint64(w.m.pageSize)
	w.hwm = w.m.pgid
	w.rep.PageSize = int(w.m.pageSize)
	w.rep.TxID = w.m.txid
	w.rep.HighWater = w.hwm

	filePages := uint64(w.size) / w.pageSize
	w.npages = min(w.hwm, filePages)
	if filePages < 2 {
		w.problem(0, "", "file of %d bytes is shorter than two pages of %d bytes", w.size, w.pageSize)
		return false
	}
	if w.hwm < 2 {
		w.problem(0, "", "high-water mark %d below the two meta pages", w.hwm)
		return false
	}
	if w.hwm > filePages {
		w.problem(filePages, "", "high-water mark %d beyond file end (%d bytes hold %d pages of %d bytes)",
			w.hwm, w.size, filePages, w.pageSize)
	}
	if w.npages > uint64(w.lim.MaxPages) {
		w.problem(0, "", "%d pages exceed the limit of %d", w.npages, w.lim.MaxPages)
		return false
	}
	w.reached = newBitmap(w.npages)
	w.reached.set(0)
	w.reached.set(1)
	w.rep.Pages = 2
	return true
}

// readPage reads page id with its overflow pages after checking its bounds
// and that its type is one of want (a mask of page flags), marks its pages
// reached and returns its bytes. On failure it reports a problem (in
// bucket) and returns nil.
func (w *walker) readPage(id uint64, want uint16, bucket string, ref pageRef) []byte {
	switch {
	case id < 2:
		w.problem(id, bucket, "%s refers to meta page %d", ref, id)
		return nil
	case id >= w.hwm:
		w.problem(id, bucket, "%s: page id %d at or beyond the high-water mark %d", ref, id, w.hwm)
		return nil
	case id >= w.npages:
		w.problem(id, bucket, "%s: page %d beyond file end", ref, id)
		return nil
	case w.reached.has(id):
		w.problem(id, bucket, "multiple references (%s)", ref)
		return nil
	}
	off := int64(id * w.pageSize)
	var hb [pageHeaderSize]byte
	if err := w.readAt(hb[:], off); err != nil {
		w.problem(id, bucket, "read error: %v", err)
		return nil
	}
	h := decodePageHeader(hb[:])
	if h.id != id {
		w.problem(id, bucket, "page header says page %d (%s)", h.id, ref)
		return nil
	}
	if h.flags&want == 0 || (h.flags != flagBranch && h.flags != flagLeaf && h.flags != flagMeta && h.flags != flagFreelist) {
		w.problem(id, bucket, "invalid type: %s (%s)", typeName(h.flags), ref)
		return nil
	}
	last := id + uint64(h.overflow)
	span := (1 + uint64(h.overflow)) * w.pageSize
	switch {
	case last >= w.hwm:
		w.problem(id, bucket, "overflow %d runs past the high-water mark %d", h.overflow, w.hwm)
		return nil
	case span > uint64(w.lim.MaxPageSpan):
		w.problem(id, bucket, "overflow %d: page spans %d bytes, over the limit of %d", h.overflow, span, w.lim.MaxPageSpan)
		return nil
	case last >= w.npages:
		w.problem(id, bucket, "overflow %d runs past file end", h.overflow)
		return nil
	}
	// Mark before reading so that a cycle is cut here.
	for p := id; p <= last; p++ {
		if w.reached.has(p) {
			w.problem(p, bucket, "multiple references (overflow of page %d)", id)
			continue
		}
		w.reached.set(p)
		w.rep.Pages++
		if w.freeOK && w.free.has(p) {
			w.problem(p, bucket, "multiple references (reachable and free)")
		}
	}
	buf := make([]byte, span)
	if err := w.readAt(buf, off); err != nil {
		w.problem(id, bucket, "read error: %v", err)
		return nil
	}
	return buf
}

// readFreelist reads the persisted freelist into w.free.
func (w *walker) readFreelist() {
	w.free = newBitmap(w.npages)
	if w.m.freelist == pgidNoFreelist {
		return
	}
	w.freeOK = true
	id := w.m.freelist
	buf := w.readPage(id, flagFreelist, "", pageRef{what: "freelist"})
	if buf == nil {
		return
	}
	h := decodePageHeader(buf)
	idx, count := uint64(0), uint64(h.count)
	slots := (uint64(len(buf)) - pageHeaderSize) / pgidSize
	if count == freelistCountEscape {
		if slots < 1 {
			w.problem(id, "", "freelist count escape without room for the count")
			return
		}
		idx, count = 1, le.Uint64(buf[pageHeaderSize:])
	}
	if count > slots-idx {
		w.problem(id, "", "freelist of %d ids overruns its page (room for %d)", count, slots-idx)
		count = slots - idx
	}
	for i := idx; i < idx+count; i++ {
		off := pageHeaderSize + i*pgidSize
		p := le.Uint64(buf[off:])
		switch {
		case p < 2 || p >= w.hwm:
			w.problem(id, "", "freelist holds page id %d out of range [2, %d)", p, w.hwm)
		case p >= w.npages:
			w.problem(id, "", "freelist holds page id %d beyond file end", p)
		case w.free.has(p):
			w.problem(p, "", "already freed")
		default:
			w.free.set(p)
			w.rep.Free++
			if w.reached.has(p) {
				w.problem(p, "", "multiple references (freelist page is free)")
			}
		}
	}
}

// bucketName joins a nested bucket's key to its parent's path.
func bucketName(parent string, key []byte) string {
	const maxComponent = 64
	var s string
	if utf8.Valid(key) && !bytes.ContainsAny(key, "/") && printable(key) && len(key) > 0 {
		s = string(key)
	} else {
		s = fmt.Sprintf("0x%x", key)
	}
	if len(s) > maxComponent {
		s = s[:maxComponent] + "..."
	}
	if parent == "" {
		return s
	}
	return parent + "/" + s
}

func printable(b []byte) bool {
	return strings.IndexFunc(string(b), func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0
}

// pageRef says how a page was reached, for messages; it is formatted only
// when a problem is reported.
type pageRef struct {
	what   string // e.g. "freelist"; if "", the page is a child:
	parent uint64 // of this branch page
	index  int    // at this element
}

func (r pageRef) String() string {
	if r.what != "" {
		return r.what
	}
	return fmt.Sprintf("child %d of page %d", r.index, r.parent)
}

// frame is a unit of pending work on the walk's explicit stack: a tree
// page, or the inline page of an inline bucket.
type frame struct {
	pgid   uint64 // tree page to read, if inline == nil
	inline []byte // an inline bucket's page (header + elements)
	depth  int    // depth in its bucket's tree, root = 1
	nest   int    // bucket nesting, root bucket = 0
	bucket string // bucket path
	lo, hi []byte // keys must be in [lo, hi); nil = unbounded
	ref    pageRef
	tree   *treeState
}

// treeState is shared by the frames of one tree.
type treeState struct {
	leafDepth int // depth of the first leaf reached, 0 before
}

// visitFunc is called for each leaf element of a tree, in tree order.
// Returning a non-nil error stops the walk with it.
type visitFunc func(f *frame, e leafElem) error

// walkTree walks the tree rooted at root with an explicit stack, checking
// each page, and calls visit for every leaf element in key order (where the
// tree is sound). Damaged pages are reported and their subtrees skipped.
func (w *walker) walkTree(root frame, visit visitFunc) error {
	root.tree = &treeState{}
	stack := []frame{root}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		children, err := w.walkPage(&f, visit)
		if err != nil {
			return err
		}
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, children[i])
		}
	}
	return nil
}

// bucketFrame decodes a bucket value (header and, for an inline bucket,
// its page) into the frame of its root, or reports why it cannot.
func (w *walker) bucketFrame(parent *frame, key, value []byte) (frame, bool) {
	name := bucketName(parent.bucket, key)
	pg := parent.pgid
	if parent.inline != nil {
		pg = 0
	}
	if len(value) < bucketHdrSize {
		w.problem(pg, parent.bucket, "bucket %q: value of %d bytes is too short for a bucket header", name, len(value))
		return frame{}, false
	}
	if parent.nest+1 > w.lim.MaxDepth {
		w.problem(pg, parent.bucket, "bucket %q: nested deeper than %d", name, w.lim.MaxDepth)
		return frame{}, false
	}
	f := frame{depth: 1, nest: parent.nest + 1, bucket: name, pgid: le.Uint64(value), ref: pageRef{what: "root of bucket " + name}}
	if f.pgid == 0 {
		f.inline = value[bucketHdrSize:]
		f.pgid = pg
		if len(f.inline) < pageHeaderSize {
			w.problem(pg, parent.bucket, "bucket %q: inline page of %d bytes is too short", name, len(f.inline))
			return frame{}, false
		}
	}
	return f, true
}

// walkPage checks the page of frame f, calls visit for a leaf's elements
// and returns the frames of a branch's children.
func (w *walker) walkPage(f *frame, visit visitFunc) ([]frame, error) {
	if f.depth > w.lim.MaxDepth {
		w.problem(f.pgid, f.bucket, "tree deeper than %d", w.lim.MaxDepth)
		return nil, nil
	}
	var buf []byte
	var where string
	if f.inline != nil {
		buf = f.inline
		where = "inline page"
		if int64(len(buf)) > w.inlineBudget {
			w.problem(f.pgid, f.bucket, "inline buckets overlap: their pages total more than the file")
			return nil, nil
		}
		w.inlineBudget -= int64(len(buf))
		if fl := decodePageHeader(buf).flags; fl != flagLeaf {
			w.problem(f.pgid, f.bucket, "inline page has invalid type: %s", typeName(fl))
			return nil, nil
		}
	} else {
		buf = w.readPage(f.pgid, flagBranch|flagLeaf, f.bucket, f.ref)
		if buf == nil {
			return nil, nil
		}
		where = "page"
	}
	h := decodePageHeader(buf)
	branches, leaves, bad := decodeElems(buf, h.flags, int(h.count))
	if bad != "" {
		w.problem(f.pgid, f.bucket, "%s: %s", where, bad)
		return nil, nil
	}
	keyAt := func(i int) []byte {
		if branches != nil {
			return branches[i].key
		}
		return leaves[i].key
	}
	n := int(h.count)
	if h.flags == flagBranch && n == 0 {
		w.problem(f.pgid, f.bucket, "empty branch page")
		return nil, nil
	}
	ordered := true
	for i := 0; i < n; i++ {
		k := keyAt(i)
		if i == 0 && f.lo != nil && bytes.Compare(k, f.lo) < 0 {
			w.problem(f.pgid, f.bucket, "%s: key[0]=%x below the parent's separator %x", where, clip(k), clip(f.lo))
			ordered = false
		}
		if i > 0 && bytes.Compare(keyAt(i-1), k) >= 0 {
			w.problem(f.pgid, f.bucket, "%s: key[%d]=%x not above key[%d]=%x", where, i, clip(k), i-1, clip(keyAt(i-1)))
			ordered = false
		}
		if f.hi != nil && bytes.Compare(k, f.hi) >= 0 {
			w.problem(f.pgid, f.bucket, "%s: key[%d]=%x not below the next separator %x", where, i, clip(k), clip(f.hi))
			ordered = false
		}
	}
	if branches != nil {
		children := make([]frame, n)
		for i, e := range branches {
			lo, hi := e.key, f.hi
			if i+1 < n {
				hi = branches[i+1].key
			}
			if !ordered {
				// Bounds from a disordered page would only cascade.
				lo, hi = f.lo, f.hi
			}
			children[i] = frame{pgid: e.pgid, depth: f.depth + 1, nest: f.nest, bucket: f.bucket, lo: lo, hi: hi,
				ref: pageRef{parent: f.pgid, index: i}, tree: f.tree}
		}
		return children, nil
	}
	// A B+tree keeps all leaves at one depth; a leaf elsewhere is a page
	// of the wrong type for its place.
	if t := f.tree; t != nil {
		if t.leafDepth == 0 {
			t.leafDepth = f.depth
		} else if f.depth != t.leafDepth {
			w.problem(f.pgid, f.bucket, "leaf at depth %d, other leaves of the tree at depth %d (%s)", f.depth, t.leafDepth, f.ref)
		}
	}
	for _, e := range leaves {
		if err := visit(f, e); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// clip shortens a key for a message.
func clip(k []byte) []byte {
	if len(k) > 32 {
		return k[:32]
	}
	return k
}

// Check walks the whole file f of size bytes: both metas, the freelist,
// the root bucket's tree and every nested bucket's tree (inline buckets
// included), and reports every problem found. It checks that each page id
// lies in [2, high-water mark) and, with its overflow, inside the file;
// that each page is reached exactly once across all trees and the freelist
// (a page reached twice, a cycle, or a reachable free page is a "multiple
// references" problem, never followed); that page types match their place;
// that elements, keys and values lie inside their page; that keys ascend
// strictly within a page and respect the parent's separators; that trees
// and bucket nesting are at most Limits.MaxDepth deep; and, when the
// freelist is persisted, that every page below the high-water mark is
// reachable or free ("unreachable unfreed").
//
// One invalid meta page while the other is valid is only a Note (bbolt
// uses the valid one, and so does Check); both invalid is a Problem.
//
// Check never panics on any content, reads each page at most once, and
// bounds memory as described on Limits.
func Check(f io.ReaderAt, size int64, lim Limits) *Report {
	w := newWalker(f, size, lim)
	if !w.open() {
		return w.rep
	}
	w.rep.Sequence = w.m.rootSeq
	w.readFreelist()
	var stack []frame
	visit := func(fr *frame, e leafElem) error {
		if e.flags&bucketLeafFlag != 0 {
			if c, ok := w.bucketFrame(fr, e.key, e.value); ok {
				stack = append(stack, c)
			}
		}
		return nil
	}
	stack = append(stack, frame{pgid: w.m.root, depth: 1, ref: pageRef{what: "root bucket"}})
	for len(stack) > 0 {
		root := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		_ = w.walkTree(root, visit)
	}
	w.unreached()
	return w.rep
}

// unreached reports pages below the high-water mark that are neither
// reachable nor free, or counts them as free when the freelist is not
// persisted.
func (w *walker) unreached() {
	if !w.freeOK {
		for p := uint64(2); p < w.npages; p++ {
			if !w.reached.has(p) {
				w.rep.Free++
			}
		}
		return
	}
	for p := uint64(2); p < w.npages; p++ {
		if w.reached.has(p) || w.free.has(p) {
			continue
		}
		q := p
		for q+1 < w.npages && !w.reached.has(q+1) && !w.free.has(q+1) {
			q++
		}
		if q == p {
			w.problem(p, "", "unreachable unfreed")
		} else {
			w.problem(p, "", "unreachable unfreed (pages %d-%d, %d pages)", p, q, q-p+1)
		}
		p = q
	}
}

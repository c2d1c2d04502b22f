package boltwalk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrNoMeta is returned by Leaf and Sequence when neither meta page of the
// file is valid, or the one in use cannot be walked (see the Report).
var ErrNoMeta = errors.New("boltwalk: no usable meta page")

// ErrBucketNotFound is returned by Leaf and Sequence when a component of
// the path was not found as a bucket in the parts of the file that could
// be read. On a damaged file the bucket may lie in a skipped subtree; the
// Report's problems say what was skipped.
var ErrBucketNotFound = errors.New("boltwalk: bucket not found")

// errFound stops a lookup walk once the wanted key was seen.
var errFound = errors.New("found")

// findBucket returns the root frame and the sequence of the bucket at path
// (the root bucket for an empty path). Each component is looked up by
// visiting its parent's whole tree, so that a damaged separator key cannot
// hide it; damaged subtrees are reported and skipped.
func (w *walker) findBucket(path [][]byte) (frame, uint64, error) {
	cur := frame{pgid: w.m.root, depth: 1, ref: pageRef{what: "root bucket"}}
	seq := w.m.rootSeq
	for i, name := range path {
		var (
			next     frame
			found    bool
			notBkt   bool
			nextSeq  uint64
			parentNm = cur.bucket
		)
		err := w.walkTree(cur, func(fr *frame, e leafElem) error {
			if !bytes.Equal(e.key, name) {
				return nil
			}
			if e.flags&bucketLeafFlag == 0 {
				notBkt = true
				return errFound
			}
			if c, ok := w.bucketFrame(fr, e.key, e.value); ok {
				next, found, nextSeq = c, true, le.Uint64(e.value[8:])
			}
			return errFound
		})
		if err != nil && err != errFound {
			return frame{}, 0, err
		}
		name := bucketName(parentNm, path[i])
		switch {
		case notBkt:
			return frame{}, 0, fmt.Errorf("%w: %q is a value, not a bucket", ErrBucketNotFound, name)
		case !found:
			return frame{}, 0, fmt.Errorf("%w: %q", ErrBucketNotFound, name)
		}
		cur, seq = next, nextSeq
	}
	return cur, seq, nil
}

// Leaf visits every entry of the bucket at path in the file f of size
// bytes: path[0] is a top-level bucket, path[1] a bucket inside it, and so
// on; an empty path visits the root bucket (whose entries are the
// top-level buckets). Entries are visited in key order where the tree is
// sound. Damaged pages are reported as problems in the Report and their
// subtrees skipped, and the walk continues with the rest: this is for
// salvage, and a nil error does not mean the bucket is intact — check
// Report.OK.
//
// For a nested-bucket entry fn gets isBucket true and a nil value. The k
// and v slices point into buffers boltwalk never reuses or modifies; fn
// must not modify them but may retain them. A non-nil error from fn stops
// the walk and is returned.
//
// The bucket's sequence number is in Report.Sequence. Leaf returns
// ErrNoMeta if the file has no usable meta and ErrBucketNotFound if a
// component of path cannot be found. Like Check, Leaf never panics and
// bounds memory and time as described on Limits.
func Leaf(f io.ReaderAt, size int64, lim Limits, path [][]byte, fn func(k, v []byte, isBucket bool) error) (*Report, error) {
	w := newWalker(f, size, lim)
	if !w.open() {
		return w.rep, ErrNoMeta
	}
	root, seq, err := w.findBucket(path)
	if err != nil {
		return w.rep, err
	}
	w.rep.Sequence = seq
	err = w.walkTree(root, func(_ *frame, e leafElem) error {
		if e.flags&bucketLeafFlag != 0 {
			return fn(e.key, nil, true)
		}
		return fn(e.key, e.value, false)
	})
	return w.rep, err
}

// Sequence returns the sequence number (as set by bbolt's NextSequence or
// SetSequence) of the bucket at path, with the same path convention and
// errors as Leaf. It reads only the trees on the way to the bucket.
func Sequence(f io.ReaderAt, size int64, lim Limits, path [][]byte) (uint64, error) {
	w := newWalker(f, size, lim)
	if !w.open() {
		return 0, ErrNoMeta
	}
	_, seq, err := w.findBucket(path)
	return seq, err
}

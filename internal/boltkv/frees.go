package boltkv

// frees.go: the pages a bbolt write transaction will free, found in the
// transaction's own state, and checked by boltwalk before bbolt frees
// them (boltwalk/frees.go says why: a damaged overflow count makes bbolt
// loop without bound). bbolt exports neither its materialized nodes nor its
// mapping as a slice, so this file reads them by reflection — reading only,
// never setting — with the field layout of bbolt v1 found once. If bbolt's
// layout ever changes, Inspectable reports false (a test asserts it is
// true) and the checks are skipped: bbolt then behaves as it does alone.
//
// Which pages a commit frees: the page of every node the transaction
// materialized (spill frees it before writing the node anew), the
// children of every materialized branch node (rebalance merges a node with
// its sibling and collapses a root into its only child, freeing them), the
// nearest page at the same level on either side of every materialized node
// even under another parent (rebalance moves a merged sibling's children
// under the node's parent, so the next merge can take its first or last
// child: found by a review that logged every page bbolt freed), the
// pages of every bucket that holds an opened nested bucket (spill rewrites
// the leaf holding the nested bucket's header, the root bucket's above
// all: walked without descending into the nested buckets, a page or two),
// the old freelist page (the caller checks it), and, in DeleteBucket, every
// page of the deleted tree (TreeFits).
//
// May touch: a *bolt.Tx handed to it, read; nothing else.

import (
	"encoding/binary"
	"reflect"
	"sync"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/psbase/psbase/internal/boltwalk"
)

// layout holds the indexes of the bbolt fields this file reads.
type layout struct {
	ok                 bool
	txRoot, txDB       int // Tx.root (Bucket), Tx.db (*DB)
	dbData, dbDatasz   int // DB.data (*[maxMapSize]byte), DB.datasz (int)
	dbPageSize         int // DB.pageSize (int)
	bBuckets, bNodes   int // Bucket.buckets, Bucket.nodes
	bIn, inRoot        int // Bucket.InBucket (*common.InBucket), InBucket.root
	nLeaf, nPgid, nIno int // node.isLeaf, node.pgid, node.inodes
	nParent            int // node.parent (*node)
	iPgid              int // common.Inode.pgid
}

// field returns the index of the field called name of kind k in t, or -1.
func field(t reflect.Type, name string, k reflect.Kind) int {
	if t.Kind() != reflect.Struct {
		return -1
	}
	f, ok := t.FieldByName(name)
	if !ok || len(f.Index) != 1 || f.Type.Kind() != k {
		return -1
	}
	return f.Index[0]
}

// boltLayout is found once: it depends only on the bbolt the program links.
var boltLayout = sync.OnceValue(func() layout {
	var l layout
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return l // bbolt writes in the machine's order, boltwalk reads little-endian
	}
	tx := reflect.TypeFor[bolt.Tx]()
	db := reflect.TypeFor[bolt.DB]()
	b := reflect.TypeFor[bolt.Bucket]()
	l.txRoot, l.txDB = field(tx, "root", reflect.Struct), field(tx, "db", reflect.Pointer)
	l.dbData, l.dbDatasz = field(db, "data", reflect.Pointer), field(db, "datasz", reflect.Int)
	l.dbPageSize = field(db, "pageSize", reflect.Int)
	l.bBuckets, l.bNodes = field(b, "buckets", reflect.Map), field(b, "nodes", reflect.Map)
	if l.bNodes < 0 || l.txRoot < 0 || tx.Field(l.txRoot).Type != b {
		return layout{}
	}
	if l.bIn = field(b, "InBucket", reflect.Pointer); l.bIn < 0 {
		return layout{}
	}
	l.inRoot = field(b.Field(l.bIn).Type.Elem(), "root", reflect.Uint64)
	node := b.Field(l.bNodes).Type.Elem() // *node
	if node.Kind() != reflect.Pointer || b.Field(l.bNodes).Type.Key().Kind() != reflect.Uint64 {
		return layout{}
	}
	node = node.Elem()
	l.nLeaf, l.nPgid, l.nIno = field(node, "isLeaf", reflect.Bool), field(node, "pgid", reflect.Uint64), field(node, "inodes", reflect.Slice)
	l.nParent = field(node, "parent", reflect.Pointer)
	if l.nIno < 0 {
		return layout{}
	}
	l.iPgid = field(node.Field(l.nIno).Type.Elem(), "pgid", reflect.Uint64)
	for _, i := range []int{l.txDB, l.dbData, l.dbDatasz, l.dbPageSize, l.bBuckets, l.nLeaf, l.nPgid, l.iPgid, l.inRoot, l.nParent} {
		if i < 0 {
			return layout{}
		}
	}
	if db.Field(l.dbData).Type.Elem().Kind() != reflect.Array || b.Field(l.bBuckets).Type.Elem() != reflect.PointerTo(b) {
		return layout{}
	}
	l.ok = true
	return l
})

// Inspectable reports whether this bbolt's transactions can be inspected
// (the field layout above was found).
func Inspectable() bool { return boltLayout().ok }

// mapped returns the file as btx's database mapped it, and its page size.
func mapped(l layout, btx *bolt.Tx) ([]byte, int) {
	db := reflect.ValueOf(btx).Elem().Field(l.txDB).Elem()
	p, n, ps := db.Field(l.dbData).UnsafePointer(), db.Field(l.dbDatasz).Int(), db.Field(l.dbPageSize).Int()
	if p == nil || n <= 0 || ps <= 0 {
		return nil, 0
	}
	return unsafe.Slice((*byte)(p), n), int(ps) // DB.Info would allocate
}

// FreesFit returns an error wrapping boltwalk.ErrDamaged if committing the
// write transaction btx would free a page whose overflow runs past the
// high-water mark. Run it just before Commit, with faults turned into
// panics (it reads the mapping). It allocates nothing but TreeFits's
// small stack for the buckets holding opened nested buckets.
func FreesFit(btx *bolt.Tx) error {
	l := boltLayout()
	if !l.ok || btx == nil || !btx.Writable() {
		return nil
	}
	m, ps := mapped(l, btx)
	if m == nil {
		return nil
	}
	hw := uint64(btx.Size()) / uint64(ps)
	return bucketFrees(l, reflect.ValueOf(btx).Elem().Field(l.txRoot), m, ps, hw, 0, true)
}

// bucketFrees checks the nodes of bucket b (a bolt.Bucket value) and of the
// nested buckets it opened.
//
// cross false leaves out the neighbors under other parents: the negative
// control of TestFreesFitCrossParent.
func bucketFrees(l layout, b reflect.Value, m []byte, ps int, hw uint64, depth int, cross bool) error {
	if depth > 64 { // bbolt nests no deeper than its callers do; psbase: 2
		return nil
	}
	var it reflect.MapIter
	it.Reset(b.Field(l.bNodes))
	for it.Next() {
		n := it.Value().Elem()
		if id := n.Field(l.nPgid).Uint(); id != 0 { // 0: a node of an inline bucket
			if err := boltwalk.SpanFits(m, ps, hw, id); err != nil {
				return err
			}
			for _, last := range []bool{true, false} {
				if _, err := neighbor(l, n, m, ps, hw, last, 0, cross); err != nil {
					return err
				}
			}
		}
		if n.Field(l.nLeaf).Bool() {
			continue
		}
		ino := n.Field(l.nIno)
		for i := range ino.Len() {
			if err := boltwalk.SpanFits(m, ps, hw, ino.Index(i).Field(l.iPgid).Uint()); err != nil {
				return err
			}
		}
	}
	subs := b.Field(l.bBuckets)
	if subs.Len() == 0 {
		return nil
	}
	if in := b.Field(l.bIn); !in.IsNil() {
		if root := in.Elem().Field(l.inRoot).Uint(); root != 0 { // 0: inline
			if err := boltwalk.TreeFits(m, ps, hw, root, false); err != nil {
				return err
			}
		}
	}
	it.Reset(subs)
	for it.Next() {
		if err := bucketFrees(l, it.Value().Elem(), m, ps, hw, depth+1, cross); err != nil {
			return err
		}
	}
	return nil
}

// neighbor returns the page beside node n (a bbolt node value) at its level,
// before it (last: the last child of what is before n's parent) or after
// it, crossing parents, after SpanFits on it; 0 if n is at the tree's edge.
func neighbor(l layout, n reflect.Value, m []byte, ps int, hw uint64, last bool, depth int, cross bool) (uint64, error) {
	p := n.Field(l.nParent)
	if p.IsNil() || depth > 64 {
		return 0, nil
	}
	p = p.Elem()
	ino, id := p.Field(l.nIno), n.Field(l.nPgid).Uint()
	i := 0
	for ; i < ino.Len() && ino.Index(i).Field(l.iPgid).Uint() != id; i++ {
	}
	if i == ino.Len() {
		return 0, nil // a node bbolt has not placed under its parent
	}
	j := i + 1
	if last {
		j = i - 1
	}
	if j >= 0 && j < ino.Len() {
		nb := ino.Index(j).Field(l.iPgid).Uint()
		return nb, boltwalk.SpanFits(m, ps, hw, nb)
	}
	if !cross {
		return 0, nil
	}
	pn, err := neighbor(l, p, m, ps, hw, last, depth+1, cross)
	if err != nil || pn == 0 {
		return 0, err
	}
	// The parent's neighbor's child nearest to n: its last child if it
	// lies before, its first if after.
	nb, err := boltwalk.EdgeChild(m, ps, hw, pn, last)
	if err != nil || nb == 0 {
		return 0, err
	}
	return nb, boltwalk.SpanFits(m, ps, hw, nb)
}

// treeFits checks every page of the bucket b before DeleteBucket frees
// them (nil b, an inline bucket or an uninspectable bbolt: nothing to do).
func treeFits(btx *bolt.Tx, b *bolt.Bucket) error {
	l := boltLayout()
	if !l.ok || b == nil || b.Root() == 0 {
		return nil
	}
	m, ps := mapped(l, btx)
	if m == nil {
		return nil
	}
	return boltwalk.TreeFits(m, ps, uint64(btx.Size())/uint64(ps), uint64(b.Root()), true)
}

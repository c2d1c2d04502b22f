package psbase

// changes.go: the change feed's log. Every commit of a writable transaction
// that changed something advances the store's revision by one and writes,
// in the same bbolt transaction, an entry under that revision listing the
// IDs it inserted, updated and deleted (and whether the schema changed).
// The log is trimmed to its retention in that same transaction. Because the
// entry commits atomically with the data, a watcher can never see a change
// that was not committed, nor miss one that was.
//
// Recording happens at ONE point every write passes: a writable Tx's
// records bucket is a changeBucket (Tx.init), whose Put and Delete note the
// ID, and Tx.finish writes the entry just before the commit. Txn, Begin,
// the one-call methods, group commit's combined batches (one bbolt
// transaction: one revision), DDL and Recover all go through it.
//
// May touch: nothing but its Tx (the meta and changes buckets of its
// transaction); the Store methods run in transactions of Store.run.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/psbase/psbase/internal/kv"
)

// ChangeKind is what a change did to a record.
type ChangeKind uint8

// The kinds of change. A revision lists each record once, with the net
// effect of its transaction: a record inserted and updated in it is an
// insert, one inserted and deleted in it is not listed at all.
const (
	ChangeInsert ChangeKind = 1 + iota // the record was inserted
	ChangeUpdate                       // the record was updated (its Version went up)
	ChangeDelete                       // the record was deleted
	ChangeSchema                       // the schema changed (a field or index added, dropped or changed); ID is 0
)

var changeKindNames = [...]string{ChangeInsert: "insert", ChangeUpdate: "update", ChangeDelete: "delete", ChangeSchema: "schema"}

// String returns "insert", "update", "delete" or "schema".
func (k ChangeKind) String() string {
	if k >= ChangeInsert && k <= ChangeSchema {
		return changeKindNames[k]
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// MarshalText encodes the kind as its name, so a Change marshals to JSON
// as {"Rev":7,"Kind":"insert","ID":42}.
func (k ChangeKind) MarshalText() ([]byte, error) {
	if k < ChangeInsert || k > ChangeSchema {
		return nil, fmt.Errorf("psbase: no change kind %d", uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText is the inverse of MarshalText.
func (k *ChangeKind) UnmarshalText(b []byte) error {
	for i, n := range changeKindNames {
		if n != "" && n == string(b) {
			*k = ChangeKind(i)
			return nil
		}
	}
	return fmt.Errorf("psbase: unknown change kind %q", b)
}

// Change is one entry of the change feed: what the commit of revision Rev
// did to record ID.
type Change struct {
	Rev  uint64     // the revision whose commit made the change
	Kind ChangeKind // insert, update, delete, or schema (then ID is 0)
	ID   uint64     // the record
}

func (c Change) String() string {
	if c.Kind == ChangeSchema {
		return fmt.Sprintf("%d schema", c.Rev)
	}
	return fmt.Sprintf("%d %s %d", c.Rev, c.Kind, c.ID)
}

// ChangesGoneError is the error of Changes and Watch for a revision whose
// successors the change log no longer holds: the log was trimmed past it
// (the caller fell behind the retention, see WithChangeRetention), the
// store was restored from a backup (Restore empties the log and moves the
// revision past every earlier one), or the store at the path is not the
// one the revision came from. It matches ErrChangesGone. The cure is a
// resync: read the records afresh (View gives the records and
// Tx.Revision in one snapshot) and continue from there.
type ChangesGoneError struct {
	Since  uint64 // the revision asked for
	Oldest uint64 // the oldest revision the log can continue from
	Rev    uint64 // the store's revision now: resync, then continue from it
	Reason string // why, for people
}

func (e *ChangesGoneError) Error() string {
	return fmt.Sprintf("%v: after revision %d: %s; the store is at revision %d (its log continues from %d): read the records afresh and continue from %d",
		ErrChangesGone, e.Since, e.Reason, e.Rev, e.Oldest, e.Rev)
}

// Is makes a *ChangesGoneError match ErrChangesGone.
func (e *ChangesGoneError) Is(target error) bool { return target == ErrChangesGone }

// ChangesPage bounds the changes one call of Changes returns: it stops
// after the revision that reaches it (a revision is never split).
const ChangesPage = 65536

// Changes returns the changes committed after revision since, in revision
// order (within a revision: a schema change first, then inserts, updates
// and deletes, each in ID order), and the revision they bring the caller
// to: pass it as since to the next call. It is the store's current revision
// unless more than ChangesPage changes were waiting (then call again). A
// since of 0 asks for the whole log; the store's current revision is
// Store.Revision.
//
// A since older than the log's retention, or from a store that was
// restored or replaced since, is *ChangesGoneError (ErrChangesGone), which
// carries the revision to resync from. Changes reads under the shared lock,
// like any read. On a store of format 3 or older, which has no change log,
// it first upgrades the store to format 4 (one short write transaction;
// afterwards a psbase older than format 4 can read the store but not write
// it, so that no write goes unlogged).
func (s *Store) Changes(ctx context.Context, since uint64) (changes []Change, rev uint64, err error) {
	err = s.feedView(ctx, "changes", func(tx *Tx) error {
		var err error
		changes, rev, _, err = tx.changesSince(since, ChangesPage)
		return err
	})
	return changes, rev, err
}

// Revision returns the store's revision: how many logged commits changed it
// (see Changes). A store of format 3 or older is upgraded first, as by
// Changes, so that every write after this call is in the log.
func (s *Store) Revision(ctx context.Context) (rev uint64, err error) {
	err = s.feedView(ctx, "revision", func(tx *Tx) error {
		rev = tx.Revision()
		return nil
	})
	return rev, err
}

// Revision returns the store's revision as this transaction sees it: read
// the records and their revision in one View, and Watch from it, to follow
// a table without missing or doubling anything. It is 0 in a store that has
// no change log yet (format 3 or older: Store.Revision upgrades it).
func (tx *Tx) Revision() uint64 { return u64(tx.meta.Get(keyRev)) }

// errNoFeed: the store has no change log yet (format 3 or older).
var errNoFeed = errors.New("the store has no change log")

// feedView runs fn in a read transaction on a store that has a change log,
// upgrading a store that has none first (in a write transaction of its own).
func (s *Store) feedView(ctx context.Context, op string, fn func(*Tx) error) error {
	read := func() error {
		return s.run(ctx, op, false, func(tx *Tx) error {
			if tx.meta.Get(keyRev) == nil {
				return errNoFeed
			}
			return fn(tx)
		})
	}
	err := read()
	if !errors.Is(err, errNoFeed) {
		return err
	}
	if err := s.run(ctx, op, true, func(tx *Tx) error { return tx.startFeed() }); err != nil {
		return err
	}
	return read()
}

// startFeed gives a store of an older format its change log: format 2 and
// 3 only need the meta keys, format 1 also needs every record's checksum
// recomputed (as Cleanup does). The records are untouched otherwise, and
// nothing is logged: the log starts at revision 0 from here.
func (tx *Tx) startFeed() (err error) {
	old, err := tx.enter(true)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	if tx.meta.Get(keyRev) != nil {
		return nil
	}
	if tx.format < 2 {
		return upgradeFormat(tx.kt, tx.format)
	}
	if err := initFeed(tx.meta); err != nil {
		return err
	}
	return setFormat(tx.meta, FormatVersion)
}

// initFeed writes the change feed's meta keys of a new log: revision 0,
// nothing logged, a fresh identity.
func initFeed(meta kv.Bucket) error {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	for _, kv := range [][2][]byte{{keyRev, putU64(0)}, {keyLogBase, putU64(0)}, {keyLogBytes, putU64(0)}, {keyStoreID, id[:]}} {
		if err := meta.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// ensureFeed gives meta the change feed's keys if it has none.
func ensureFeed(meta kv.Bucket) error {
	if meta.Get(keyRev) != nil {
		return nil
	}
	return initFeed(meta)
}

// txFeed is what a writable transaction changed, noted by changeBucket.
type txFeed struct {
	set    map[uint64]ChangeKind // net effect per record ID
	seq    uint64                // the records bucket's sequence when the transaction began
	logged bool                  // the entry is written already (weak.feedLogFirst)
}

// changeBucket is a writable transaction's records bucket: every Put and
// Delete of a record passes here and is noted in the transaction's feed.
type changeBucket struct {
	inner // every other method, as it is
	f     *txFeed
}

// inner names the wrapped bucket (an embedded kv.Bucket would be a field
// called Bucket, hiding the method of that name).
type inner = kv.Bucket

// watchRecords makes tx's records bucket note what is written to it.
func (tx *Tx) watchRecords() {
	tx.feed = txFeed{seq: tx.records.Sequence()}
	tx.records = &changeBucket{inner: tx.records, f: &tx.feed}
}

// Put writes a record and notes it: an ID handed out in this transaction,
// or one with no record before, is an insert; anything else an update.
func (b *changeBucket) Put(key, value []byte) error {
	if len(key) != 8 {
		return b.inner.Put(key, value)
	}
	id := u64(key)
	prev, seen := b.f.set[id]
	kind := prev
	switch {
	case !seen && (id > b.f.seq || b.inner.Get(key) == nil):
		kind = ChangeInsert
	case !seen, prev == ChangeDelete:
		kind = ChangeUpdate
	}
	if err := b.inner.Put(key, value); err != nil {
		return err
	}
	b.f.note(id, kind)
	return nil
}

// Delete removes a record and notes it; a record inserted in this same
// transaction leaves no trace.
func (b *changeBucket) Delete(key []byte) error {
	if len(key) != 8 || b.inner.Get(key) == nil {
		return b.inner.Delete(key)
	}
	if err := b.inner.Delete(key); err != nil {
		return err
	}
	id := u64(key)
	if b.f.set[id] == ChangeInsert {
		delete(b.f.set, id)
		return nil
	}
	b.f.note(id, ChangeDelete)
	return nil
}

func (f *txFeed) note(id uint64, k ChangeKind) {
	if f.set == nil {
		f.set = map[uint64]ChangeKind{}
	}
	f.set[id] = k
}

// logChanges writes the transaction's entry into the change log, advancing
// the revision, and trims the log; Tx.finish calls it just before the
// commit. A transaction that changed nothing leaves the revision alone. A
// store of format 2 or 3 becomes format 4 here (its log starts); one of
// format 1 keeps no log until Cleanup upgrades it.
func (tx *Tx) logChanges() error {
	f := &tx.feed
	if !tx.write || f.logged || tx.format < 2 || (len(f.set) == 0 && !tx.schemaChanged) {
		return nil
	}
	if tx.s.cfg.weak.feedSkipCombined && tx.op == "combine" {
		return nil
	}
	return appendLog(tx.kt, tx.meta, encodeEntry(f.set, tx.schemaChanged), tx.s.cfg.changeKeep)
}

// appendLog adds entry as the next revision and trims the log to its
// retention (keep, if set, replaces the one the store records).
func appendLog(kt kv.Tx, meta kv.Bucket, entry []byte, keep changeKeep) error {
	if err := ensureFeed(meta); err != nil {
		return err
	}
	if formatOf(meta) < FormatVersion {
		if err := setFormat(meta, FormatVersion); err != nil {
			return err
		}
	}
	if keep != (changeKeep{}) && keep != storedKeep(meta) {
		if err := meta.Put(keyLogKeep, append(putU64(keep.revs), putU64(keep.bytes)...)); err != nil {
			return err
		}
	}
	keep = storedKeep(meta)
	rev := u64(meta.Get(keyRev)) + 1
	base := u64(meta.Get(keyLogBase))
	size := u64(meta.Get(keyLogBytes)) + uint64(len(entry))
	b := kt.Bucket(bucketChanges)
	if b == nil {
		var err error
		if b, err = kt.CreateBucket(bucketChanges); err != nil {
			return err
		}
	}
	if err := b.Put(putU64(rev), entry); err != nil {
		return err
	}
	// Trim from the oldest entry while the log is over either bound; the
	// newest entry always stays.
	var drop [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil && u64(k) < rev && (rev-base > keep.revs || size > keep.bytes); k, v = c.Next() {
		drop = append(drop, putU64(u64(k)))
		base = u64(k)
		size -= min(size, uint64(len(v)))
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for _, kv := range [][2][]byte{{keyRev, putU64(rev)}, {keyLogBase, putU64(base)}, {keyLogBytes, putU64(size)}} {
		if err := meta.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// storedKeep is the retention the store records, or the defaults.
func storedKeep(meta kv.Bucket) changeKeep {
	k := changeKeep{revs: DefaultChangeRetention, bytes: DefaultChangeLogBytes}
	if v := meta.Get(keyLogKeep); len(v) == 16 {
		if r := binary.BigEndian.Uint64(v[:8]); r > 0 {
			k.revs = r
		}
		if b := binary.BigEndian.Uint64(v[8:]); b > 0 {
			k.bytes = b
		}
	}
	return k
}

// An entry (FORMAT.md): flags (uvarint; bit 0: the schema changed), then
// for inserts, updates and deletes in turn a count (uvarint) and that many
// uvarint gaps between ascending IDs (the first from 0).
const entrySchema = 1

func encodeEntry(set map[uint64]ChangeKind, schemaChanged bool) []byte {
	var by [3][]uint64
	for id, k := range set {
		by[k-ChangeInsert] = append(by[k-ChangeInsert], id)
	}
	flags := uint64(0)
	if schemaChanged {
		flags |= entrySchema
	}
	b := binary.AppendUvarint(make([]byte, 0, 4+2*len(set)), flags)
	for _, ids := range by {
		slices.Sort(ids)
		b = binary.AppendUvarint(b, uint64(len(ids)))
		prev := uint64(0)
		for _, id := range ids {
			b = binary.AppendUvarint(b, id-prev)
			prev = id
		}
	}
	return b
}

// decodeEntry appends the changes of revision rev's entry to out. Every
// count is checked against the bytes that remain before anything is
// allocated: a damaged entry is an error, never a crash.
func decodeEntry(out []Change, rev uint64, b []byte) ([]Change, error) {
	bad := func(what string) ([]Change, error) {
		return out, errorf(ErrCorrupt, "change log entry of revision %d: %s", rev, what)
	}
	flags, n := binary.Uvarint(b)
	if n <= 0 || flags&^entrySchema != 0 {
		return bad("bad flags")
	}
	b = b[n:]
	if flags&entrySchema != 0 {
		out = append(out, Change{Rev: rev, Kind: ChangeSchema})
	}
	for k := ChangeInsert; k <= ChangeDelete; k++ {
		count, n := binary.Uvarint(b)
		if n <= 0 || count > uint64(len(b)-n) {
			return bad("bad count")
		}
		b = b[n:]
		out = slices.Grow(out, int(count))
		id := uint64(0)
		for range count {
			gap, n := binary.Uvarint(b)
			if n <= 0 || gap == 0 || id+gap < id {
				return bad("bad ID")
			}
			b = b[n:]
			id += gap
			out = append(out, Change{Rev: rev, Kind: k, ID: id})
		}
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	return out, nil
}

// changesSince returns the changes of the revisions after since, whole
// revisions until limit changes are reached, the revision they end at, and
// whether more revisions follow.
func (tx *Tx) changesSince(since uint64, limit int) (out []Change, rev uint64, more bool, err error) {
	old, err := tx.enter(false)
	if err != nil {
		return nil, 0, false, err
	}
	defer tx.exit(old, &err)
	cur, base := u64(tx.meta.Get(keyRev)), u64(tx.meta.Get(keyLogBase))
	switch {
	case since < base:
		return nil, 0, false, &ChangesGoneError{Since: since, Oldest: base, Rev: cur,
			Reason: "the change log no longer holds the revisions that followed it (trimmed to its retention, or the store was restored from a backup)"}
	case since > cur:
		return nil, 0, false, &ChangesGoneError{Since: since, Oldest: base, Rev: cur,
			Reason: "the store is behind that revision: it is not the store the revision came from (replaced by an older copy, or re-created)"}
	case since == cur:
		return nil, cur, false, nil
	}
	b := tx.kt.Bucket(bucketChanges)
	if b == nil {
		return nil, 0, false, errorf(ErrCorrupt, "the store is at revision %d but has no change log", cur)
	}
	rev = since
	c := b.Cursor()
	n := 0
	for k, v := c.Seek(putU64(since + 1)); k != nil && rev < cur; k, v = c.Next() {
		if err := tx.tick(&n); err != nil {
			return nil, 0, false, err
		}
		if len(k) != 8 || u64(k) != rev+1 {
			break
		}
		rev++
		if out, err = decodeEntry(out, rev, v); err != nil {
			return nil, 0, false, err
		}
		if len(out) >= limit {
			break
		}
	}
	if rev < cur && len(out) < limit {
		return nil, 0, false, errorf(ErrCorrupt, "revision %d is missing from the change log (the store is at %d)", rev+1, cur)
	}
	return out, rev, rev < cur, nil
}

// storeID is the store's identity (16 bytes; empty without a change log):
// Watch notices a store replaced under it by its change.
func (tx *Tx) storeID() string { return string(tx.meta.Get(keyStoreID)) }

// restampRestored prepares a copy that Restore is about to put in place:
// its revision moves past both its own and the replaced store's (cur), its
// log is emptied (the revisions it held describe another history) and it
// gets a new identity, so that every watcher of the store learns that it
// must resync (ErrChangesGone) instead of continuing on a history that was
// undone. A copy of an older format is upgraded.
func restampRestored(kt kv.Tx, cur uint64) error {
	meta := kt.Bucket(bucketMeta)
	format := formatOf(meta)
	if format < FormatVersion {
		if err := upgradeFormat(kt, format); err != nil {
			return err
		}
	}
	rev := max(cur, u64(meta.Get(keyRev))) + 1
	if kt.Bucket(bucketChanges) != nil {
		if err := kt.DeleteBucket(bucketChanges); err != nil {
			return err
		}
	}
	if err := initFeed(meta); err != nil {
		return err
	}
	if err := meta.Put(keyRev, putU64(rev)); err != nil {
		return err
	}
	return meta.Put(keyLogBase, putU64(rev))
}

// checkChanges checks the change log (format 4): the meta keys, one entry
// for every revision after the log's base up to the store's revision and
// none other, each decoding to IDs the records bucket has handed out, and
// the byte count.
func checkChanges(btx kv.Tx, rep *CheckReport) {
	meta := btx.Bucket(bucketMeta)
	if meta == nil || formatOf(meta) < 4 {
		return
	}
	for _, k := range [][]byte{keyRev, keyLogBase, keyLogBytes} {
		if len(meta.Get(k)) != 8 {
			rep.add(0, "", "change log: meta key %q is missing or not 8 bytes", k)
			return
		}
	}
	if len(meta.Get(keyStoreID)) != 16 {
		rep.add(0, "", "change log: the store's identity is missing or not 16 bytes")
	}
	if v := meta.Get(keyLogKeep); v != nil && len(v) != 16 {
		rep.add(0, "", "change log: its retention is not 16 bytes")
	}
	rev, base, size := u64(meta.Get(keyRev)), u64(meta.Get(keyLogBase)), u64(meta.Get(keyLogBytes))
	if base > rev {
		rep.add(0, "", "change log: it starts after revision %d but the store is at %d", base, rev)
		return
	}
	b := btx.Bucket(bucketChanges)
	if b == nil {
		if rev > base {
			rep.add(0, "", "change log: missing (the store is at revision %d)", rev)
		}
		return
	}
	seq := uint64(0)
	if r := btx.Bucket(bucketRecords); r != nil {
		seq = r.Sequence()
	}
	next, total := base+1, uint64(0)
	c := b.Cursor()
	var buf []Change
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 || v == nil {
			rep.add(0, "", "change log: key %x is not a revision", k)
			continue
		}
		r := u64(k)
		switch {
		case r < next && r <= base, r > rev:
			rep.add(0, "", "change log: an entry for revision %d, outside the log (%d, %d]", r, base, rev)
		case r > next:
			rep.add(0, "", "change log: revisions %d to %d are missing", next, r-1)
		}
		next = max(next, r+1)
		total += uint64(len(v))
		var err error
		if buf, err = decodeEntry(buf[:0], r, v); err != nil {
			rep.add(0, "", "%s", recordCause(err, 0))
			continue
		}
		for _, ch := range buf {
			if ch.ID > seq {
				rep.add(0, "", "change log: revision %d names record %d, beyond the ID sequence %d", r, ch.ID, seq)
				break
			}
		}
	}
	if next <= rev {
		rep.add(0, "", "change log: revisions %d to %d are missing", next, rev)
	}
	if total != size {
		rep.add(0, "", "change log: its entries take %d bytes, the meta says %d", total, size)
	}
}

package psbase

// insert_id.go: Tx.InsertWithID, inserting a record under an ID the caller
// chooses (an import that keeps the IDs of an export, a record put back from
// an old backup). It reuses the record layer's insert path (records.go
// putNew) and moves the ID sequence past the ID.
//
// May touch: nothing but its Tx (the records, meta and index buckets of its transaction).

// InsertWithID adds a record under the given ID, version 1, as Insert does
// (v is a Values, a map or a struct; missing fields get their defaults,
// unique indexes are checked), instead of taking the next ID of the
// sequence.
//
// An ID already in use is refused with a *DuplicateError for the field "id"
// (it matches ErrDuplicate, and its ExistingID is the ID); ID 0 is ErrSchema.
// A refused call writes nothing. If id is past the records' ID sequence
// (FORMAT.md: the last ID handed out), the sequence moves to id, so later
// Inserts never hand out an ID that clashes. An ID below the sequence that
// is free (its record was deleted) is accepted: the caller chose to reuse
// it, where Insert never would.
func (tx *Tx) InsertWithID(id uint64, v any) (err error) {
	old, err := tx.enter(true)
	if err != nil {
		return err
	}
	defer tx.exit(old, &err)
	if id == 0 {
		return errorf(ErrSchema, "record ID 0 is not valid: IDs start at 1")
	}
	vals, err := tx.prepare(v, false)
	if err != nil {
		return err
	}
	if !tx.s.cfg.weak.insertIDNoClash && tx.records.Get(tx.lookupKey(id)) != nil {
		return &DuplicateError{Field: "id", Value: id, ExistingID: id}
	}
	if err := tx.indexCheckUnique(0, vals); err != nil {
		return err
	}
	if id > tx.records.Sequence() && !tx.s.cfg.weak.insertIDNoSeq {
		if err := tx.records.SetSequence(id); err != nil {
			return err
		}
	}
	return tx.putNew(id, vals)
}

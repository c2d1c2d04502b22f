package psbase

import bolt "go.etcd.io/bbolt"

// indexDef describes a secondary index on one field (see index docs).
type indexDef struct {
	Field  string `msgpack:"field"`
	Num    uint32 `msgpack:"num"` // the field's number: the index bucket's name
	Unique bool   `msgpack:"unique"`
}

func (s *schema) index(field string) *indexDef {
	for i := range s.Indexes {
		if s.Indexes[i].Field == field {
			return &s.Indexes[i]
		}
	}
	return nil
}

// Index maintenance hooks, called by table.go inside the write transaction.
func (tx *Tx) indexCheckUnique(id uint64, vals Values) error { return nil }
func (tx *Tx) indexAdd(id uint64, vals Values) error         { return nil }
func (tx *Tx) indexRemove(id uint64, vals Values) error      { return nil }
func (tx *Tx) indexReplace(id uint64, old, new Values) error { return nil }
func (tx *Tx) indexOrdered(cq *compiledQuery) bool           { return false }
func (tx *Tx) indexScan(cq *compiledQuery, emit func(Record) (bool, error)) (bool, error) {
	return false, nil
}

func (tx *Tx) createIndex(field string, unique bool, progress func(done, total int)) error {
	return errorf(ErrSchema, "indexes are not built yet")
}
func (tx *Tx) dropIndex(field string) error                               { return errorf(ErrSchema, "no index on %q", field) }
func (s *Store) checkIndexes(btx *bolt.Tx, sch *schema, rep *CheckReport) {}

// Upsert inserts or updates by a unique key (see Store.Upsert).
func (tx *Tx) Upsert(key string, v any) (uint64, bool, error) {
	return 0, false, errorf(ErrSchema, "indexes are not built yet")
}

// GetBy returns the record whose uniquely indexed field equals value.
func (tx *Tx) GetBy(field string, value any) (Record, error) {
	return Record{}, errorf(ErrSchema, "indexes are not built yet")
}

// Explain returns how Select would run q.
func (tx *Tx) Explain(q Query) (Plan, error) { return Plan{Access: "scan"}, nil }

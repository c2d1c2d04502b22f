package etcdkv

// cursor.go: ordered iteration over a bucket — the snapshot's keys, read in
// pages at the Tx's revision, merged with the write buffer (buffered values
// shown, deleted and cleared keys hidden), forwards and backwards.
//
// May touch: the store's keys in etcd (range reads at the Tx's revision).

import (
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// pageSize is how many keys one range read fetches.
const pageSize = 256

// cursor implements kv.Cursor over the keys in [lo, hi); it returns keys
// without the lo prefix.
type cursor struct {
	t      *Tx
	lo, hi string
	cur    string // the full key it stands on; "" before the first move
	win    window
}

// window is one page of the snapshot: every snapshot key in [from, to).
type window struct {
	keys     []string
	vals     [][]byte
	from, to string
	ok       bool
}

func (c *cursor) fetchAsc(from string) {
	c.win = window{}
	if c.t.err != nil {
		return
	}
	resp, err := c.t.b.cli.Get(c.t.ctx, from, clientv3.WithRange(c.hi), clientv3.WithRev(c.t.rev),
		clientv3.WithLimit(pageSize), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		c.t.fail(err)
		return
	}
	w := window{from: from, to: c.hi, ok: true}
	for _, kv := range resp.Kvs {
		w.keys = append(w.keys, string(kv.Key))
		w.vals = append(w.vals, kv.Value)
	}
	if resp.More && len(w.keys) > 0 {
		w.to = w.keys[len(w.keys)-1] + "\x00"
	}
	c.win = w
}

func (c *cursor) fetchDesc(to string) {
	c.win = window{}
	if c.t.err != nil {
		return
	}
	resp, err := c.t.b.cli.Get(c.t.ctx, c.lo, clientv3.WithRange(to), clientv3.WithRev(c.t.rev),
		clientv3.WithLimit(pageSize), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		c.t.fail(err)
		return
	}
	w := window{from: c.lo, to: to, ok: true}
	for i := len(resp.Kvs) - 1; i >= 0; i-- {
		w.keys = append(w.keys, string(resp.Kvs[i].Key))
		w.vals = append(w.vals, resp.Kvs[i].Value)
	}
	if resp.More && len(w.keys) > 0 {
		w.from = w.keys[0]
	}
	c.win = w
}

// snapNext returns the first visible snapshot key >= pos (> pos unless incl).
func (c *cursor) snapNext(pos string, incl bool) (string, []byte, bool) {
	for {
		if !c.win.ok || pos < c.win.from || pos >= c.win.to {
			c.fetchAsc(pos)
			if !c.win.ok {
				return "", nil, false
			}
		}
		i, found := slices.BinarySearch(c.win.keys, pos)
		if found && !incl {
			i++
		}
		if i < len(c.win.keys) {
			k := c.win.keys[i]
			if c.t.hidden(k) {
				pos, incl = k, false
				continue
			}
			return k, c.win.vals[i], true
		}
		if c.win.to >= c.hi {
			return "", nil, false
		}
		pos, incl = c.win.to, true
	}
}

// snapPrev returns the last visible snapshot key < before.
func (c *cursor) snapPrev(before string) (string, []byte, bool) {
	for {
		if before <= c.lo {
			return "", nil, false
		}
		if !c.win.ok || before <= c.win.from || before > c.win.to {
			c.fetchDesc(before)
			if !c.win.ok {
				return "", nil, false
			}
		}
		i, _ := slices.BinarySearch(c.win.keys, before)
		if i > 0 {
			k := c.win.keys[i-1]
			if c.t.hidden(k) {
				before = k
				continue
			}
			return k, c.win.vals[i-1], true
		}
		if c.win.from <= c.lo {
			return "", nil, false
		}
		before = c.win.from
	}
}

// bufNext returns the first buffered value with key in [pos, hi) (> pos unless incl).
func (c *cursor) bufNext(pos string, incl bool) (string, []byte, bool) {
	i, found := c.t.find(pos)
	if found && !incl {
		i++
	}
	for ; i < len(c.t.buf); i++ {
		e := c.t.buf[i]
		if e.key >= c.hi {
			break
		}
		if !e.del {
			return e.key, e.val, true
		}
	}
	return "", nil, false
}

// bufPrev returns the last buffered value with key in [lo, before).
func (c *cursor) bufPrev(before string) (string, []byte, bool) {
	i, _ := c.t.find(before)
	for i--; i >= 0; i-- {
		e := c.t.buf[i]
		if e.key < c.lo {
			break
		}
		if !e.del {
			return e.key, e.val, true
		}
	}
	return "", nil, false
}

func (c *cursor) forward(pos string, incl bool) ([]byte, []byte) {
	if c.t.done {
		return nil, nil
	}
	if pos < c.lo {
		pos, incl = c.lo, true
	}
	sk, sv, sok := c.snapNext(pos, incl)
	bk, bv, bok := c.bufNext(pos, incl)
	switch {
	case sok && (!bok || sk < bk):
		return c.land(sk, sv)
	case bok:
		return c.land(bk, bv)
	}
	c.cur = c.hi
	return nil, nil
}

func (c *cursor) backward(before string) ([]byte, []byte) {
	if c.t.done {
		return nil, nil
	}
	sk, sv, sok := c.snapPrev(before)
	bk, bv, bok := c.bufPrev(before)
	switch {
	case sok && (!bok || sk > bk):
		return c.land(sk, sv)
	case bok:
		return c.land(bk, bv)
	}
	c.cur = c.lo
	return nil, nil
}

func (c *cursor) land(full string, v []byte) ([]byte, []byte) {
	c.cur = full
	if v == nil {
		v = []byte{}
	}
	return append([]byte{}, strings.TrimPrefix(full, c.lo)...), v
}

func (c *cursor) First() ([]byte, []byte) { return c.forward(c.lo, true) }
func (c *cursor) Last() ([]byte, []byte)  { return c.backward(c.hi) }

func (c *cursor) Seek(seek []byte) ([]byte, []byte) {
	return c.forward(c.lo+string(seek), true)
}

func (c *cursor) Next() ([]byte, []byte) {
	if c.cur >= c.hi {
		return nil, nil
	}
	return c.forward(c.cur, false)
}

func (c *cursor) Prev() ([]byte, []byte) {
	if c.cur == "" {
		return nil, nil
	}
	return c.backward(c.cur)
}

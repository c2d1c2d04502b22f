package psbase

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// randomValue draws a canonical value of type t, biased towards edge cases.
func randomValue(r *rand.Rand, t Type) any {
	if r.IntN(12) == 0 {
		return nil
	}
	switch t {
	case Int:
		edges := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 255, 256, -256}
		if r.IntN(3) == 0 {
			return edges[r.IntN(len(edges))]
		}
		return int64(r.Uint64())
	case Float:
		edges := []float64{0, math.Copysign(0, -1), 1, -1, math.Inf(1), math.Inf(-1), math.NaN(),
			math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64, math.MaxFloat64, -math.MaxFloat64}
		if r.IntN(3) == 0 {
			return edges[r.IntN(len(edges))]
		}
		return math.Float64frombits(r.Uint64())
	case Bool:
		return r.IntN(2) == 1
	case Time:
		edges := []time.Time{{}, time.Unix(0, 0), time.Unix(-1, 999999999), time.Unix(1, 0)}
		if r.IntN(3) == 0 {
			return edges[r.IntN(len(edges))].UTC()
		}
		return time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(1e9)).UTC()
	case String, Bytes:
		alphabet := []byte{0, 1, 'a', 'b', 0xFE, 0xFF}
		b := make([]byte, r.IntN(5))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if t == String {
			return string(b)
		}
		return b
	}
	return nil
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// checkOrderPair asserts the two properties of orderKey for one pair: key
// order equals value order, and no key is a proper prefix of another.
func checkOrderPair(t *testing.T, typ Type, a, b any) {
	t.Helper()
	ka, kb := orderKey(nil, typ, a), orderKey(nil, typ, b)
	want := sign(compareNullable(typ, a, b))
	if got := sign(bytes.Compare(ka, kb)); got != want {
		t.Fatalf("%s: order of keys %x, %x is %d; order of values %#v, %#v is %d", typ, ka, kb, got, a, b, want)
	}
	if want != 0 && (bytes.HasPrefix(ka, kb) || bytes.HasPrefix(kb, ka)) {
		t.Fatalf("%s: key %x and %x are prefix-related for different values %#v, %#v", typ, ka, kb, a, b)
	}
}

func TestOrderKeyProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, typ := range []Type{Int, Float, Bool, Time, String, Bytes} {
		for range 20000 {
			checkOrderPair(t, typ, randomValue(r, typ), randomValue(r, typ))
		}
	}
}

// TestOrderKeyNegativeControl: the property check catches a naive encoding
// (plain two's-complement big-endian ints put negatives after positives).
func TestOrderKeyNegativeControl(t *testing.T) {
	naive := func(v int64) []byte {
		var b [8]byte
		for i := range 8 {
			b[i] = byte(uint64(v) >> (56 - 8*i))
		}
		return b[:]
	}
	if sign(bytes.Compare(naive(-1), naive(1))) == sign(compareValues(Int, int64(-1), int64(1))) {
		t.Fatal("the naive encoding should order -1 after 1")
	}
}

func TestPrefixKeyAndSuccessor(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		s := randomValue(r, Bytes)
		p := randomValue(r, Bytes)
		if s == nil || p == nil {
			continue
		}
		sb, pb := s.([]byte), p.([]byte)
		k := orderKey(nil, Bytes, sb)
		pk := prefixKey(pb)
		has := bytes.HasPrefix(sb, pb)
		in := bytes.Compare(k, pk) >= 0 && (successor(pk) == nil || bytes.Compare(k, successor(pk)) < 0)
		if has != in {
			t.Fatalf("value %x prefix %x: HasPrefix %v but key range says %v", sb, pb, has, in)
		}
	}
	if successor([]byte{0xFF, 0xFF}) != nil || !bytes.Equal(successor([]byte{1, 0xFF}), []byte{2}) {
		t.Fatal("successor")
	}
}

func FuzzOrderKey(f *testing.F) {
	f.Add(int64(-1), int64(1), 0.5, -0.5, "a\x00", "a", int64(0), int64(5))
	f.Fuzz(func(t *testing.T, i1, i2 int64, f1, f2 float64, s1, s2 string, t1, t2 int64) {
		checkOrderPair(t, Int, i1, i2)
		checkOrderPair(t, Float, f1, f2)
		checkOrderPair(t, String, s1, s2)
		checkOrderPair(t, Bytes, []byte(s1), []byte(s2))
		checkOrderPair(t, Time, time.Unix(t1%(1<<40), t2%1e9).UTC(), time.Unix(t2%(1<<40), t1%1e9).UTC())
	})
}

package defaults

import (
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	for _, c := range []struct{ v, def, want time.Duration }{
		{0, time.Second, time.Second},
		{-1, time.Second, time.Second},
		{time.Millisecond, time.Second, time.Millisecond},
	} {
		v := c.v
		Set(&v, c.def)
		if v != c.want {
			t.Errorf("Set(%v, %v): got %v, want %v", c.v, c.def, v, c.want)
		}
	}
	n := 3
	Set(&n, 7)
	if n != 3 {
		t.Errorf("Set(3, 7): got %d, want 3", n)
	}
}

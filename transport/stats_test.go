package transport

import (
	"reflect"
	"strings"
	"testing"
)

// Dropped names every Dropped* counter, with its value: /stats and
// /metrics both read it, so a new drop reason cannot be shown by one and
// missed by the other.
func TestStatsDroppedHasEveryCounter(t *testing.T) {
	var st Stats
	typ := reflect.TypeFor[Stats]()
	want := 0
	for i := range typ.NumField() {
		if strings.HasPrefix(typ.Field(i).Name, "Dropped") {
			want++
			reflect.ValueOf(&st).Elem().Field(i).Addr().Interface().(interface{ Add(uint64) uint64 }).Add(uint64(i + 1))
		}
	}
	got := st.Dropped()
	if len(got) != want {
		t.Fatalf("Dropped has %d reasons, Stats has %d Dropped* counters", len(got), want)
	}
	sum, wantSum := uint64(0), uint64(0)
	for i := range typ.NumField() {
		if strings.HasPrefix(typ.Field(i).Name, "Dropped") {
			wantSum += uint64(i + 1)
		}
	}
	for _, n := range got {
		sum += n
	}
	if sum != wantSum {
		t.Fatalf("Dropped's values sum to %d, want %d: a reason reads the wrong counter", sum, wantSum)
	}
}

package storm

import (
	"slices"
	"testing"
)

func TestUserFlags(t *testing.T) {
	in := []string{"-test.paniconexit0", "-test.timeout=10m0s", "-test.v=true", "-storm.long", "-test.run", "X", "-test.v", "-db=/tmp/x"}
	if got, want := userFlags(in), []string{"-storm.long", "-db=/tmp/x"}; !slices.Equal(got, want) {
		t.Errorf("userFlags = %q, want %q", got, want)
	}
}

func TestGoraceEnv(t *testing.T) {
	for env, want := range map[string]string{
		"":                         "GORACE=atexit_sleep_ms=0",
		"GORACE=halt_on_error=1":   "GORACE=halt_on_error=1 atexit_sleep_ms=0",
		"GORACE=atexit_sleep_ms=5": "GORACE=atexit_sleep_ms=5",
	} {
		if got := goraceEnv([]string{env}); got != want {
			t.Errorf("goraceEnv(%q) = %q, want %q", env, got, want)
		}
	}
}

func TestMaxInFlight(t *testing.T) {
	h := History{
		{Status: StatusOK, Call: 1, Return: 5},
		{Status: StatusOK, Call: 2, Return: 3},
		{Status: StatusOK, Call: 3, Return: 4}, // starts as the previous ends: not overlapping it
		{Status: StatusInfo, Call: 2},          // unknown end: not counted
		{Status: StatusFail, Call: 6, Return: 7},
	}
	if got := h.MaxInFlight(); got != 2 {
		t.Errorf("MaxInFlight = %d, want 2", got)
	}
}

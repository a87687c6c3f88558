// Package testkit holds the small helpers the gateway's tests share.
package testkit

import (
	"testing"
	"time"
)

// Env is a lookupEnv (as os.LookupEnv) over vars.
func Env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// Eventually polls cond until it holds, and fails the test after 10 s
// naming what it waited for: tests wait for states, never for times.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

package bwrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Check's refusals keep their type: a caller can tell missing namespaces
// from a missing bwrap with errors.Is, and the advice is in the message.
func TestCheckErrorsKeepTheirType(t *testing.T) {
	dir := t.TempDir()
	fake := func(name, script string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, bwrap string
		want, not   error
	}{
		{"no namespaces", fake("userns", "echo 'bwrap: Creating new namespace failed: Operation not permitted' >&2; exit 1"), ErrNamespaces, ErrNoBwrap},
		{"no bwrap", filepath.Join(dir, "missing"), ErrNoBwrap, ErrNamespaces},
		{"other failure", fake("other", "echo 'bwrap: something else' >&2; exit 1"), nil, ErrNamespaces},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(context.Background(), tc.bwrap)
			if err == nil {
				t.Fatal("Check succeeded with a failing bwrap")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %v; want errors.Is %v", err, tc.want)
			}
			if errors.Is(err, tc.not) {
				t.Errorf("got %v; want it not to be %v", err, tc.not)
			}
			if tc.want == ErrNamespaces && !strings.Contains(err.Error(), "Creating new namespace failed") {
				t.Errorf("got %v; want bwrap's own message kept", err)
			}
		})
	}
}

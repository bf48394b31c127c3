package kube

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"k8s.io/client-go/util/exec"
)

// TestDeliverFallsBack: the binary goes gzip-compressed; an image without
// gzip (the script's noGzip exit) gets it plain; any other failure is
// returned as it is.
func TestDeliverFallsBack(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mlagent")
	want := bytes.Repeat([]byte("static binary "), 50_000)
	if err := os.WriteFile(bin, want, 0o755); err != nil {
		t.Fatal(err)
	}
	decode := func(how string, r io.Reader) []byte {
		b, _ := io.ReadAll(r)
		if how == "cat" {
			return b
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("not gzip: %v", err)
		}
		out, _ := io.ReadAll(zr)
		return out
	}
	cases := []struct {
		name     string
		hasGzip  bool
		otherErr error
		tries    []string
		err      bool
	}{
		{name: "image with gzip", hasGzip: true, tries: []string{"gzip"}},
		{name: "image without gzip", hasGzip: false, tries: []string{"gzip", "cat"}},
		{name: "exec fails", hasGzip: true, otherErr: errors.New("connection reset"), tries: []string{"gzip"}, err: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tries []string
			var got []byte
			err := deliverWith(bin, true, func(how string, r io.Reader) error {
				kind := "cat"
				if how != "cat" {
					kind = "gzip"
				}
				tries = append(tries, kind)
				if c.otherErr != nil {
					return c.otherErr
				}
				if kind == "gzip" && !c.hasGzip {
					return exec.CodeExitError{Err: errors.New("exit 97"), Code: noGzip}
				}
				got = decode(how, r)
				return nil
			})
			if (err != nil) != c.err || len(tries) != len(c.tries) || tries[0] != c.tries[0] || tries[len(tries)-1] != c.tries[len(c.tries)-1] {
				t.Fatalf("got %v, tries %v; want error %v, tries %v", err, tries, c.err, c.tries)
			}
			if !c.err && !bytes.Equal(got, want) {
				t.Errorf("delivered %d bytes; want the binary's %d", len(got), len(want))
			}
		})
	}
}

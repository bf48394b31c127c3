package kube

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/mlagent/mlagent/internal/volume"
)

// helperNotFound is volume-helper's exit status for a path or volume that
// is not there.
const helperNotFound = 3

// ServeVolume is the body of `mlagent volume-helper` in a helper pod: one
// operation on the volumes mounted under dir, with internal/volume's
// rules, answering on stdout (JSON, a file's bytes, or a tree stream).
//
//	ls|measure|cat|pack NAME REL, unpack NAME REL (a tree stream on stdin),
//	rm NAME REL [-r]
func ServeVolume(dir string, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 3 || len(args) > 4 || len(args) == 4 && (args[0] != "rm" || args[3] != "-r") {
		return fmt.Errorf("usage: volume-helper ls|measure|cat|pack|unpack|rm NAME REL [-r]")
	}
	st := volume.New(dir)
	op, name, rel := args[0], args[1], args[2]
	answer := func(v any, err error) error {
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(v)
	}
	switch op {
	case "ls":
		entries, truncated, err := st.ReadDir(name, rel)
		return answer(listing{Entries: entries, Truncated: truncated}, err)
	case "measure":
		return answer(st.Measure(name, rel))
	case "cat":
		_, err := st.Cat(name, rel, stdout)
		return err
	case "pack":
		return st.Pack(name, rel, stdout)
	case "unpack":
		intoDir := len(rel) > 0 && rel[len(rel)-1] == '/'
		return answer(st.UnpackInto(name, rel, intoDir, bufio.NewReaderSize(stdin, 256<<10)))
	case "rm":
		return st.RemovePath(name, rel, len(args) == 4)
	}
	return fmt.Errorf("volume-helper: unknown operation %q", op)
}

// ServeVolumeStatus is the exit status for ServeVolume's error.
func ServeVolumeStatus(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, volume.ErrNotFound):
		return helperNotFound
	}
	return 1
}

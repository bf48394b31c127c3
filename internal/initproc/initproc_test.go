package initproc

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "PATH=/bin"}, []string{"B=3", "C=4"})
	want := []string{"A=1", "B=3", "PATH=/bin", "C=4"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o644)
	env := []string{"PATH=/nonexistent:" + dir}
	if got, err := lookPath("tool", env); err != nil || got != exe {
		t.Errorf("lookPath(tool): got %q, %v; want %q", got, err, exe)
	}
	if _, err := lookPath("data", env); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lookPath(non-executable): got %v; want ErrNotExist", err)
	}
	if got, _ := lookPath("./rel/x", env); got != "./rel/x" {
		t.Errorf("lookPath(path): got %q; want it unchanged", got)
	}
}

func TestReplyErrorMapsErrno(t *testing.T) {
	for _, e := range []syscall.Errno{syscall.ENOENT, syscall.EACCES, syscall.EROFS} {
		r := errReply(&fs.PathError{Op: "open", Path: "/x", Err: e})
		if got := replyError(&r); !errors.Is(got, e) {
			t.Errorf("%v: got %v; want errors.Is errno", e, got)
		}
	}
	r := Reply{Error: "x", Errno: "ENOENT"}
	if !errors.Is(replyError(&r), fs.ErrNotExist) {
		t.Errorf("ENOENT reply: want fs.ErrNotExist")
	}
}

// FuzzRecv feeds arbitrary messages to the control socket's reader: code
// inside the sandbox can connect to it, so it must never panic.
func FuzzRecv(f *testing.F) {
	for _, s := range []string{`{"op":"exec","argv":["true"]}`, `{"op":"read","path":"/x"}`, `{`, `[]`, `{"mode":-1}`, ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Skip(err)
		}
		a, b := os.NewFile(uintptr(pair[0]), "a"), os.NewFile(uintptr(pair[1]), "b")
		ca, _ := net.FileConn(a)
		cb, _ := net.FileConn(b)
		a.Close()
		b.Close()
		defer ca.Close()
		defer cb.Close()
		if len(msg) > 0 {
			ca.Write(msg)
		} else {
			ca.Close()
		}
		var req Request
		fds, _ := recv(cb.(*net.UnixConn), &req)
		closeAll(fds)
	})
}

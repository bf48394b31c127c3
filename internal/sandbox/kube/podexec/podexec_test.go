package podexec

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/initproc"
)

// startInit runs a real init (not as PID 1) on a control socket in a
// temporary directory and returns a Stream that runs Serve against it in
// process, as `mlagent relay` would in a pod.
func startInit(t *testing.T) (Stream, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- initproc.Run(ctx, initproc.Options{Control: sock, DefaultDir: dir, Ready: w}) }()
	line := make([]byte, 3)
	if _, err := io.ReadFull(r, line); err != nil || string(line) != "ok\n" {
		t.Fatalf("init: got %q, %v", line, err)
	}
	t.Cleanup(func() { cancel(); <-done })
	stream := func(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
		return Serve(ctx, stdin, stdout, ServeOptions{Init: sock, Dir: dir})
	}
	return stream, dir
}

func TestExec(t *testing.T) {
	stream, dir := startInit(t)
	ctx := context.Background()
	cases := []struct {
		name           string
		req            Request
		stdin          string
		stdout, stderr string
		code           int
	}{
		{name: "stdout", req: Request{Argv: []string{"echo", "hello"}}, stdout: "hello\n"},
		{name: "stderr and code", req: Request{Argv: []string{"sh", "-c", "echo oops >&2; exit 3"}}, stderr: "oops\n", code: 3},
		{name: "stdin", req: Request{Argv: []string{"tr", "a-z", "A-Z"}}, stdin: "shout", stdout: "SHOUT"},
		{name: "env and dir", req: Request{Argv: []string{"sh", "-c", "echo $X; pwd"}, Env: []string{"X=y"}, Dir: "/"}, stdout: "y\n/\n"},
		{name: "default dir", req: Request{Argv: []string{"pwd"}}, stdout: dir + "\n"},
		{name: "signal", req: Request{Argv: []string{"sh", "-c", "kill -9 $$"}}, code: 137},
		{name: "large output", req: Request{Argv: []string{"sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x"}}, stdout: strings.Repeat("x", 1000000)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			var in io.Reader
			if c.stdin != "" {
				in = strings.NewReader(c.stdin)
			}
			code, err := Exec(ctx, stream, c.req, in, &out, &errb)
			if err != nil || code != c.code || out.String() != c.stdout || errb.String() != c.stderr {
				t.Errorf("got %d %v stdout %.40q stderr %q; want %d %.40q %q", code, err, out.String(), errb.String(), c.code, c.stdout, c.stderr)
			}
		})
	}
	t.Run("missing command", func(t *testing.T) {
		code, err := Exec(ctx, stream, Request{Argv: []string{"no-such-command"}}, nil, nil, nil)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got %d, %v; want an ENOENT error", code, err)
		}
	})
}

// TestCancelKills: cancelling kills the command's process group through
// the kill frame.
func TestCancelKills(t *testing.T) {
	stream, dir := startInit(t)
	ctx, cancel := context.WithCancel(context.Background())
	marker := filepath.Join(dir, "alive")
	errc := make(chan error, 1)
	go func() {
		_, err := Exec(ctx, stream, Request{Argv: []string{"sh", "-c", "(while :; do touch " + marker + "; sleep 0.05; done) & wait"}}, nil, nil, nil)
		errc <- err
	}()
	waitFile(t, marker)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want context.Canceled", err)
	}
	os.Remove(marker)
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the background loop still runs after cancel")
	}
}

// TestBrokenStreamKills: a stream that ends without a kill frame (the
// host went away) kills the command too.
func TestBrokenStreamKills(t *testing.T) {
	stream, dir := startInit(t)
	marker := filepath.Join(dir, "alive")
	inR, inW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- stream(context.Background(), inR, io.Discard) }()
	hdr := `{"op":"exec","argv":["sh","-c","while :; do touch ` + marker + `; sleep 0.05; done"]}`
	if err := writeFrame(inW, frameHeader, []byte(hdr)); err != nil {
		t.Fatal(err)
	}
	waitFile(t, marker)
	inW.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("podexec still running 10s after its stream ended")
	}
	os.Remove(marker)
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the command still runs after the stream broke")
	}
}

func TestFiles(t *testing.T) {
	stream, dir := startInit(t)
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789"), 100_000)
	if err := WriteFile(ctx, stream, "big", bytes.NewReader(big), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "big"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("got %v, %v; want the file with mode 600", st, err)
	}
	got, err := ReadFile(ctx, stream, filepath.Join(dir, "big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("ReadFile: got %d bytes, %v; want %d", len(got), err, len(big))
	}
	if _, err := ReadFile(ctx, stream, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile missing: got %v; want fs.ErrNotExist", err)
	}
	if _, err := ReadFile(ctx, stream, dir); err == nil {
		t.Errorf("ReadFile of a directory: got nil error")
	}
	if err := WriteFile(ctx, stream, "/proc/no/such", strings.NewReader("x"), 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile into a missing directory: got %v; want fs.ErrNotExist", err)
	}
	if err := Ping(ctx, stream); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestTruncatedWrite: a write whose stream breaks before the end of the
// file is an error, not a short file reported as written.
func TestTruncatedWrite(t *testing.T) {
	_, dir := startInit(t)
	inR, inW := io.Pipe()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), inR, &out, ServeOptions{Init: "unused", Dir: dir})
	}()
	writeFrame(inW, frameHeader, []byte(`{"op":"write","path":"half"}`))
	writeFrame(inW, frameStdin, []byte("half of it"))
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), errStreamEnded.Error()) {
		t.Errorf("got %q; want an exit frame with %q", out.String(), errStreamEnded)
	}
}

func TestStreamLost(t *testing.T) {
	broken := func(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
		return errors.New("connection reset")
	}
	_, err := Exec(context.Background(), broken, Request{Argv: []string{"true"}}, nil, nil, nil)
	if !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("got %v; want ErrLost with the cause", err)
	}
}

func waitFile(t *testing.T, p string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	t.Fatalf("%s never appeared", p)
}

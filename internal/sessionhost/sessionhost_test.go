package sessionhost

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
)

// fakeAgent is the session's agent: the test writes its events and reads
// what it was sent.
type fakeAgent struct {
	inR    *io.PipeReader
	inW    *io.PipeWriter
	evR    *io.PipeReader
	evW    *io.PipeWriter
	out    *protocol.Writer
	inputs chan protocol.Input
}

func newFakeAgent(t *testing.T) *fakeAgent {
	a := &fakeAgent{inputs: make(chan protocol.Input, 16)}
	a.inR, a.inW = io.Pipe()
	a.evR, a.evW = io.Pipe()
	a.out = protocol.NewWriter(a.evW)
	go func() {
		r := protocol.NewReader(a.inR)
		for {
			in, err := r.Next()
			if err != nil {
				return
			}
			a.inputs <- in
		}
	}()
	t.Cleanup(func() { a.inR.Close(); a.evW.Close() })
	return a
}

func (a *fakeAgent) Input() io.WriteCloser { return a.inW }
func (a *fakeAgent) Events() io.Reader     { return a.evR }

func (a *fakeAgent) emit(t *testing.T, evs ...protocol.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := a.out.Emit(ev); err != nil {
			t.Fatal(err)
		}
	}
}

func (a *fakeAgent) next(t *testing.T) protocol.Input {
	t.Helper()
	select {
	case in := <-a.inputs:
		return in
	case <-time.After(5 * time.Second):
		t.Fatal("the agent got no input")
		return protocol.Input{}
	}
}

// frontEnd is one side of a connection to the server.
type frontEnd struct {
	c  net.Conn
	sc *bufio.Scanner
}

func newFrontEnd(c net.Conn) *frontEnd {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &frontEnd{c: c, sc: sc}
}

func (f *frontEnd) send(t *testing.T, in protocol.Input) {
	t.Helper()
	b, _ := protocol.MarshalInput(in)
	if _, err := f.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (f *frontEnd) next(t *testing.T) protocol.Event {
	t.Helper()
	f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if !f.sc.Scan() {
		t.Fatalf("front end: no event: %v", f.sc.Err())
	}
	ev, err := protocol.ParseEvent(f.sc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// closed reads to the end of the connection: true when it ends (rather
// than times out).
func (f *frontEnd) closed(t *testing.T) bool {
	f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for f.sc.Scan() {
	}
	var ne net.Error
	return !errors.As(f.sc.Err(), &ne) || !ne.Timeout()
}

func startServer(t *testing.T) (*fakeAgent, *Server, *frontEnd, func() *frontEnd, chan error) {
	t.Helper()
	a := newFakeAgent(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srv := New(a, "s-1", "m", nil)
	mine, theirs := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln, theirs) }()
	dial := func() *frontEnd {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return newFrontEnd(c)
	}
	return a, srv, newFrontEnd(mine), dial, done
}

// TestDetachAndAttach: a front end that detaches leaves the session
// running; the next one is told what happened meanwhile, the jobs still
// running and the questions still waiting, and can answer them.
func TestDetachAndAttach(t *testing.T) {
	a, srv, fe, dial, done := startServer(t)
	a.emit(t, protocol.Event{Type: protocol.EventReady, Session: "s-1", Model: "m"})
	fe.next(t)
	fe.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "train"})
	if in := a.next(t); in.Text != "train" {
		t.Fatalf("agent got %+v", in)
	}
	// net.Pipe is synchronous: read each event before the next is written.
	a.emit(t, protocol.Event{Type: protocol.EventJob, Job: &protocol.Job{ID: "job1", Command: "python3 train.py", Status: "running"}})
	fe.next(t)
	a.emit(t, protocol.Event{Type: protocol.EventAskUser, ID: "q1", Question: "Push when done?"})
	fe.next(t)
	fe.send(t, protocol.Input{Type: protocol.InputDetach})
	if !fe.closed(t) {
		t.Fatal("the detached front end's connection stays open")
	}
	for srv.Attached() {
		time.Sleep(time.Millisecond)
	}
	a.emit(t, protocol.Event{Type: protocol.EventTextDelta, Text: "epoch 3 done"})
	select {
	case in := <-a.inputs:
		t.Fatalf("the agent got %+v after the detach; want nothing (no shutdown)", in)
	case <-time.After(100 * time.Millisecond):
	}

	fe2 := dial()
	var got []string
	for range 4 {
		ev := fe2.next(t)
		s := ev.Type
		switch {
		case ev.Type == protocol.EventAttached && ev.Busy && ev.Session == "s-1":
			s += " busy"
		case ev.Job != nil:
			s += " " + ev.Job.ID
		case ev.Text != "":
			s += " " + ev.Text
		case ev.ID != "":
			s += " " + ev.ID
		}
		got = append(got, s)
	}
	want := []string{"attached busy", "text_delta epoch 3 done", "job job1", "ask_user q1"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("greeting: got %q; want %q", got, want)
		}
	}
	fe2.send(t, protocol.Input{Type: protocol.InputAnswer, ID: "q1", Text: "yes"})
	if in := a.next(t); in.Type != protocol.InputAnswer || in.Text != "yes" {
		t.Errorf("agent got %+v; want the answer", in)
	}
	// A third front end takes over; the second is told.
	fe3 := dial()
	if ev := fe2.next(t); ev.Type != protocol.EventError || ev.Kind != "detached" {
		t.Errorf("the replaced front end got %+v", ev)
	}
	fe3.next(t) // attached
	fe3.send(t, protocol.Input{Type: protocol.InputShutdown})
	if in := a.next(t); in.Type != protocol.InputShutdown {
		t.Errorf("agent got %+v; want shutdown", in)
	}
	a.evW.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if !fe3.closed(t) {
		t.Error("the front end stays connected after the agent ended")
	}
}

// TestFrontEndGone: a front end that goes without a word ends an idle
// session, but leaves one with a running job for the next to attach.
func TestFrontEndGone(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		a, _, fe, _, _ := startServer(t)
		a.emit(t, protocol.Event{Type: protocol.EventReady, Session: "s-1", Model: "m"})
		fe.next(t)
		fe.c.Close()
		if in := a.next(t); in.Type != protocol.InputShutdown {
			t.Errorf("agent got %+v; want shutdown", in)
		}
	})
	t.Run("a job runs", func(t *testing.T) {
		a, _, fe, dial, _ := startServer(t)
		a.emit(t, protocol.Event{Type: protocol.EventJob, Job: &protocol.Job{ID: "job2", Command: "sleep 1000", Status: "running"}})
		fe.next(t)
		fe.c.Close()
		select {
		case in := <-a.inputs:
			t.Fatalf("agent got %+v; want the session left running", in)
		case <-time.After(200 * time.Millisecond):
		}
		fe2 := dial()
		if ev := fe2.next(t); ev.Type != protocol.EventAttached {
			t.Fatalf("got %+v; want attached", ev)
		}
		if ev := fe2.next(t); ev.Job == nil || ev.Job.ID != "job2" {
			t.Errorf("got %+v; want the running job", ev)
		}
	})
}

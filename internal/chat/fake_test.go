package chat

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
)

// fakeAgent speaks the agent side of the protocol from a test script: the
// script reads inputs with next and writes events with emit.
type fakeAgent struct {
	t      *testing.T
	in     *protocol.Reader
	out    *protocol.Writer
	outW   *io.PipeWriter
	mu     sync.Mutex
	inputs []protocol.Input // every input received, in order
	done   chan struct{}
}

// startFake runs script in a goroutine and returns the pipes for
// Options.AgentIn / AgentOut. After the script returns the fake keeps
// reading inputs until the driver closes its stdin (so shutdown is seen),
// then closes its stdout.
func startFake(t *testing.T, script func(a *fakeAgent)) (*fakeAgent, io.WriteCloser, io.Reader) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	a := &fakeAgent{t: t, in: protocol.NewReader(inR), out: protocol.NewWriter(outW), outW: outW, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		defer outW.Close()
		defer inR.Close() // a dead agent's stdin refuses writes
		defer func() {
			// An aborted script (errStop) ends the agent like a crash.
			if r := recover(); r != nil && r != errStop {
				panic(r)
			}
		}()
		script(a)
		for {
			if _, err := a.next(); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		inR.Close()
		outR.Close()
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			t.Errorf("fake agent did not finish")
		}
	})
	return a, inW, outR
}

var errStop = errors.New("fake agent: stdin closed")

func (a *fakeAgent) next() (protocol.Input, error) {
	in, err := a.in.Next()
	if err != nil {
		return in, err
	}
	a.mu.Lock()
	a.inputs = append(a.inputs, in)
	a.mu.Unlock()
	return in, nil
}

// expect reads the next input and checks its type; on EOF it stops the
// script.
func (a *fakeAgent) expect(typ string) protocol.Input {
	in, err := a.next()
	if err != nil {
		panic(errStop)
	}
	if in.Type != typ {
		a.t.Errorf("fake agent: got input %+v; want type %s", in, typ)
	}
	return in
}

func (a *fakeAgent) emit(evs ...protocol.Event) {
	for _, ev := range evs {
		if err := a.out.Emit(ev); err != nil {
			panic(errStop)
		}
	}
}

func (a *fakeAgent) received() []protocol.Input {
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]protocol.Input(nil), a.inputs...)
}

func inputTypes(ins []protocol.Input) []string {
	var s []string
	for _, in := range ins {
		s = append(s, in.Type)
	}
	return s
}

// fakeClock advances by step at every reading, so elapsed times in the
// output are fixed.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		t = t.Add(step)
		return t
	}
}

// person is the typing side: lines are written when the test decides
// (from OnEvent/OnTurn hooks, so they follow what they answer).
type person struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func newPerson(t *testing.T) *person {
	r, w := io.Pipe()
	t.Cleanup(func() { w.Close(); r.Close() })
	return &person{r: r, w: w}
}

// say types lines without blocking the driver's goroutine.
func (p *person) say(lines ...string) {
	go func() {
		for _, l := range lines {
			if _, err := io.WriteString(p.w, l+"\n"); err != nil {
				return
			}
		}
	}()
}

func (p *person) ctrlD() { go p.w.Close() }

// Package sessionhost keeps a chat's session going without its front end:
// the host process owns the session's gateway, sandbox and agent, and
// serves the agent's protocol to one front end at a time over a Unix
// socket, so that a person can leave a long job running (detach) and come
// back to it (mlagent attach). While nobody is attached the agent's events
// are kept (bounded) and shown to the next front end, with the questions
// still waiting and the jobs still running.
package sessionhost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
)

// Agent is the session being served; launch.AgentSession is one.
type Agent interface {
	// Input takes protocol input lines; Events yields event lines and
	// ends when the agent exits.
	Input() io.WriteCloser
	Events() io.Reader
}

// Bounds on what is kept for the next front end while none is attached.
const (
	maxBacklogEvents = 4096
	maxBacklogBytes  = 4 << 20
	// writeTimeout is how long a front end may take to read an event
	// before it is taken for gone (the agent must not wait on it).
	writeTimeout = 10 * time.Second
)

// Server serves one session. Safe for concurrent use.
type Server struct {
	agent Agent
	log   *slog.Logger
	// Session and Model greet attaching front ends.
	session, model string

	mu        sync.Mutex
	conn      net.Conn // the attached front end, nil when detached
	busy      bool     // a turn is running
	pending   []pendingQ
	jobs      map[string][]byte // running jobs' last event lines
	backlog   [][]byte          // events since the last front end left
	backBytes int
	dropped   int        // backlog events dropped for the bounds
	ending    bool       // a front end asked for shutdown, or the agent ended
	input     sync.Mutex // one writer of whole lines to the agent
	deliver   sync.Mutex // held while an event is passed on, or a front end changes
}

type pendingQ struct {
	id, name string
	line     []byte
}

// New returns a server for the agent of the given session.
func New(agent Agent, session, model string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{agent: agent, session: session, model: model, log: log, jobs: map[string][]byte{}}
}

// Serve relays until the agent's events end: first is the front end that
// started the session (nil: none); ln accepts the ones that attach later.
// A front end that goes without a word is taken to have detached when
// there is work to come back to (a running turn, a job, a question);
// otherwise the session is shut down, as nothing would be lost.
func (s *Server) Serve(ctx context.Context, ln net.Listener, first net.Conn) error {
	if first != nil {
		s.attach(first, false) // before any event: it sees them all
	}
	events := make(chan error, 1)
	go func() { events <- s.pump() }()
	if ln != nil {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				s.attach(c, true)
			}
		}()
	}
	select {
	case err := <-events:
		s.mu.Lock()
		s.ending = true
		c := s.conn
		s.conn = nil
		s.mu.Unlock()
		if c != nil {
			c.Close()
		}
		return err
	case <-ctx.Done():
		s.send(protocol.Input{Type: protocol.InputShutdown})
		return ctx.Err()
	}
}

// pump reads the agent's events, keeps the state an attaching front end
// needs, and passes each event on.
func (s *Server) pump() error {
	r := protocol.NewEventReader(s.agent.Events())
	for {
		ev, raw, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.deliver.Lock()
		s.mu.Lock()
		s.track(ev, raw)
		c := s.conn
		if c == nil {
			s.keep(raw)
		}
		s.mu.Unlock()
		if c != nil {
			c.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := c.Write(raw); err != nil {
				s.log.Info("front end gone while writing", "err", err)
				s.drop(c)
				s.mu.Lock()
				s.keep(raw)
				s.mu.Unlock()
			}
		}
		s.deliver.Unlock()
	}
}

// track updates the session's state from an event; s.mu is held.
func (s *Server) track(ev protocol.Event, raw []byte) {
	switch ev.Type {
	case protocol.EventAskUser, protocol.EventApproval:
		s.forget(ev.ID)
		if !ev.Withdrawn {
			s.pending = append(s.pending, pendingQ{id: ev.ID, name: ev.Name, line: raw})
		}
	case protocol.EventTurnEnd:
		s.busy = false
		// The agent's questions die with its turn; held writes wait on.
		kept := s.pending[:0]
		for _, q := range s.pending {
			if q.name == protocol.GatewayName {
				kept = append(kept, q)
			}
		}
		s.pending = kept
	case protocol.EventJob:
		if ev.Job == nil {
			break
		}
		if ev.Job.Running() {
			s.jobs[ev.Job.ID] = raw
		} else {
			delete(s.jobs, ev.Job.ID)
		}
	case protocol.EventReady:
		s.session, s.model = ev.Session, ev.Model
	}
}

func (s *Server) forget(id string) {
	for i, q := range s.pending {
		if q.id == id {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			return
		}
	}
}

// keep holds an event for the next front end, dropping the oldest past
// the bounds; s.mu is held.
func (s *Server) keep(raw []byte) {
	s.backlog = append(s.backlog, raw)
	s.backBytes += len(raw)
	for len(s.backlog) > maxBacklogEvents || s.backBytes > maxBacklogBytes {
		s.backBytes -= len(s.backlog[0])
		s.backlog = s.backlog[1:]
		s.dropped++
	}
}

// attach makes c the front end: a later one takes over from an earlier
// one, which is told so. replay greets it with the session's state.
func (s *Server) attach(c net.Conn, replay bool) {
	// No event is passed on while the front end changes: each goes to
	// the old one, or is in the new one's greeting, or comes after it.
	s.deliver.Lock()
	defer s.deliver.Unlock()
	s.mu.Lock()
	if s.ending {
		s.mu.Unlock()
		c.Close()
		return
	}
	old := s.conn
	var greeting [][]byte
	if replay {
		greeting = s.greeting()
	}
	s.backlog, s.backBytes, s.dropped = nil, 0, 0
	s.conn = c
	s.mu.Unlock()
	if old != nil {
		line, _ := json.Marshal(protocol.Event{V: protocol.Version, Type: protocol.EventError, Kind: "detached",
			Message: "another front end attached to this session; this one is detached"})
		old.SetWriteDeadline(time.Now().Add(time.Second))
		old.Write(append(line, '\n'))
		old.Close()
	}
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	for _, line := range greeting {
		if _, err := c.Write(line); err != nil {
			s.drop(c)
			return
		}
	}
	go s.read(c)
}

// greeting is what an attaching front end is told first: who it is
// attached to, what happened since the last front end left, and the
// questions and jobs still open; s.mu is held.
func (s *Server) greeting() [][]byte {
	hello, _ := json.Marshal(protocol.Event{V: protocol.Version, Type: protocol.EventAttached, Session: s.session, Model: s.model, Busy: s.busy})
	out := [][]byte{append(hello, '\n')}
	if s.dropped > 0 {
		note, _ := json.Marshal(protocol.Event{V: protocol.Version, Type: protocol.EventTextDelta,
			Text: "[" + strconv.Itoa(s.dropped) + " earlier events while detached are not shown]\n"})
		out = append(out, append(note, '\n'))
	}
	seen := map[string]bool{}
	for _, line := range s.backlog {
		out = append(out, line)
		var ev struct{ Type, ID string }
		if json.Unmarshal(line, &ev) == nil && ev.ID != "" {
			seen[ev.Type+"/"+ev.ID] = true
		}
	}
	for _, line := range s.jobs {
		out = append(out, line)
	}
	for _, q := range s.pending {
		var ev struct{ Type string }
		json.Unmarshal(q.line, &ev)
		if !seen[ev.Type+"/"+q.id] {
			out = append(out, q.line)
		}
	}
	return out
}

// read passes c's input lines to the agent until c detaches or goes.
func (s *Server) read(c net.Conn) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), protocol.MaxLine)
	for sc.Scan() {
		line := sc.Bytes()
		in, err := protocol.ParseInput(line)
		if err != nil {
			continue // the agent would refuse it too
		}
		switch in.Type {
		case protocol.InputDetach:
			s.log.Info("front end detached")
			s.drop(c)
			return
		case protocol.InputShutdown:
			s.mu.Lock()
			s.ending = true
			s.mu.Unlock()
		case protocol.InputUserMessage:
			s.mu.Lock()
			s.busy = true
			s.mu.Unlock()
		case protocol.InputAnswer, protocol.InputApproval:
			s.mu.Lock()
			s.forget(in.ID)
			s.mu.Unlock()
		}
		if err := s.writeInput(append(line, '\n')); err != nil {
			s.log.Warn("agent input", "err", err)
			return
		}
	}
	// Gone without a word (its input ended: a closed terminal, a killed
	// process, or a chat that said shutdown and closed its side).
	s.mu.Lock()
	current := s.conn == c
	work := s.busy || len(s.jobs) > 0 || len(s.pending) > 0
	ending := s.ending
	s.mu.Unlock()
	if !current || ending {
		return
	}
	if work {
		s.log.Info("front end gone; the session goes on detached")
		s.drop(c)
		return
	}
	s.log.Info("front end gone with nothing running; shutting the session down")
	s.mu.Lock()
	s.ending = true
	s.mu.Unlock()
	s.send(protocol.Input{Type: protocol.InputShutdown})
}

// drop detaches c if it is the current front end.
func (s *Server) drop(c net.Conn) {
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	s.mu.Unlock()
	c.Close()
}

func (s *Server) send(in protocol.Input) {
	b, err := protocol.MarshalInput(in)
	if err == nil {
		s.writeInput(b)
	}
}

func (s *Server) writeInput(line []byte) error {
	s.input.Lock()
	defer s.input.Unlock()
	_, err := s.agent.Input().Write(line)
	return err
}

// Attached reports whether a front end is attached.
func (s *Server) Attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

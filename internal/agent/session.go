package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/mlagent/mlagent/internal/protocol"
)

// Session connects an Agent to the protocol: it reads inputs, runs one
// turn at a time (queuing user messages that arrive meanwhile), routes
// answers to pending ask_user calls, and handles interrupt and shutdown.
// It implements tools.Asker and tools.Approver.
type Session struct {
	Agent   *Agent
	ID      string
	Model   string
	Resumed int // messages loaded from the transcript
	// Last is where the resumed conversation left off, for the ready event.
	Last *protocol.Exchange
	Out  *protocol.Writer
	Log  *slog.Logger

	mu        sync.Mutex
	asks      map[string]chan string
	approvals map[string]chan protocol.Input
	closed    bool // input ended: nobody can answer any more
}

// ErrNoUser is returned by Ask when the input stream has ended.
var ErrNoUser = errors.New("the user's input stream is closed")

// Emit writes an event (the Agent's Emit hook).
func (s *Session) Emit(ev protocol.Event) {
	if err := s.Out.Emit(ev); err != nil && s.Log != nil {
		s.Log.Debug("emit failed", "err", err)
	}
}

// Ask sends an ask_user event and waits for the answer with the same id.
func (s *Session) Ask(ctx context.Context, id, question string, choices []string) (string, error) {
	if id == "" {
		return "", errors.New("ask_user without a call id")
	}
	ch := make(chan string, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", ErrNoUser
	}
	if s.asks == nil {
		s.asks = map[string]chan string{}
	}
	s.asks[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.asks, id)
		s.mu.Unlock()
	}()
	s.Emit(protocol.Event{Type: protocol.EventAskUser, ID: id, Question: question, Choices: choices})
	select {
	case ans, ok := <-ch:
		if !ok {
			return "", ErrNoUser
		}
		return ans, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Approve sends an approval event and waits for the decision with the
// same id: nil for allow (or always), an error saying why not for deny.
func (s *Session) Approve(ctx context.Context, id string, a protocol.Action) error {
	if id == "" {
		return errors.New("approval without a call id")
	}
	ch := make(chan protocol.Input, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrNoUser
	}
	if s.approvals == nil {
		s.approvals = map[string]chan protocol.Input{}
	}
	s.approvals[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.approvals, id)
		s.mu.Unlock()
	}()
	s.Emit(protocol.Event{Type: protocol.EventApproval, ID: id, Action: &a})
	select {
	case in, ok := <-ch:
		switch {
		case !ok:
			return ErrNoUser
		case in.Decision == protocol.DecisionDeny && in.Text != "":
			return errors.New(in.Text)
		case in.Decision == protocol.DecisionDeny:
			return errors.New("the user said no")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Session) decide(in protocol.Input) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.approvals[in.ID]
	if ok {
		ch <- in
		delete(s.approvals, in.ID)
	}
	return ok
}

func (s *Session) answer(id, text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.asks[id]
	if ok {
		ch <- text
		delete(s.asks, id)
	}
	return ok
}

func (s *Session) closeInput() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id, ch := range s.asks {
		close(ch)
		delete(s.asks, id)
	}
	for id, ch := range s.approvals {
		close(ch)
		delete(s.approvals, id)
	}
}

// Serve emits ready, then processes inputs from in until shutdown, ctx
// ends, or in ends and no work is left.
func (s *Session) Serve(ctx context.Context, in io.Reader) error {
	s.Emit(protocol.Event{Type: protocol.EventReady, Session: s.ID, Model: s.Model, ResumedMessages: s.Resumed, Last: s.Last})
	inputs := make(chan protocol.Input)
	eof := make(chan error, 1)
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	go func() {
		r := protocol.NewReader(in)
		for {
			inp, err := r.Next()
			if errors.Is(err, io.EOF) {
				eof <- nil
				return
			}
			if err != nil {
				s.Emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrProtocol, Message: err.Error()})
				if errors.Is(err, protocol.ErrRead) {
					eof <- err
					return
				}
				continue // one bad line; the next may be fine
			}
			select {
			case inputs <- inp:
			case <-readCtx.Done():
				return
			}
		}
	}()

	var (
		queue      []protocol.Input // user messages and between-turn commands, in order
		turnCancel context.CancelFunc
		turnDone   chan struct{}
		inputOver  bool
	)
	run := func(turn func(context.Context)) {
		tctx, cancel := context.WithCancel(ctx)
		turnCancel, turnDone = cancel, make(chan struct{})
		done := turnDone
		go func() {
			defer close(done)
			turn(tctx)
		}()
	}
	// start runs a queued input: a user message or a compaction is a turn;
	// a model change or a clear is done at once, between turns.
	var start func(in protocol.Input)
	start = func(in protocol.Input) {
		switch in.Type {
		case protocol.InputUserMessage:
			run(func(ctx context.Context) { s.Agent.Turn(ctx, in.Text) })
			return
		case protocol.InputCompact:
			run(func(ctx context.Context) { s.Agent.CompactTurn(ctx) })
			return
		case protocol.InputSetModel:
			s.Agent.SetModel(strings.TrimSpace(in.Text))
			s.Emit(protocol.Event{Type: protocol.EventModel, Model: s.Agent.Model()})
		case protocol.InputClear:
			if err := s.Agent.Clear(); err != nil {
				s.Emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrTranscript, Message: err.Error()})
			}
		}
		if len(queue) > 0 {
			next := queue[0]
			queue = queue[1:]
			start(next)
		}
	}
	wait := func() {
		if turnDone != nil {
			turnCancel()
			<-turnDone
			turnDone = nil
		}
	}
	for {
		select {
		case inp := <-inputs:
			switch inp.Type {
			case protocol.InputUserMessage, protocol.InputSetModel, protocol.InputClear, protocol.InputCompact:
				if turnDone == nil {
					start(inp)
				} else {
					queue = append(queue, inp)
				}
			case protocol.InputAnswer:
				if !s.answer(inp.ID, inp.Text) {
					s.Emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrProtocol, Message: fmt.Sprintf("no pending question with id %q", inp.ID)})
				}
			case protocol.InputApproval:
				if !s.decide(inp) {
					s.Emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrProtocol, Message: fmt.Sprintf("no pending approval with id %q", inp.ID)})
				}
			case protocol.InputInterrupt:
				queue = nil
				if turnDone != nil {
					turnCancel()
				}
			case protocol.InputShutdown:
				wait()
				return nil
			}
		case <-turnDone:
			turnCancel()
			turnDone = nil
			if len(queue) > 0 {
				next := queue[0]
				queue = queue[1:]
				start(next)
			}
			if turnDone == nil && inputOver {
				return nil
			}
		case <-eof:
			// Finish what was asked, but nobody can answer questions now.
			inputOver = true
			s.closeInput()
			eof = nil
			if turnDone == nil && len(queue) == 0 {
				return nil
			}
		case <-ctx.Done():
			wait()
			return ctx.Err()
		}
	}
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/skills"
	"github.com/mlagent/mlagent/internal/tools"
)

// RunOptions are what `mlagent agent` is started with inside a sandbox.
type RunOptions struct {
	Session     string // "" starts a new session with a fresh id
	Resume      bool   // continue Session's transcript
	SessionsDir string // where transcripts (and the shell's state) live
	SkillsDir   string // user skills, beside the bundled ones
	Workdir     string // the tools' working directory
	DataDir     string // the persistent volume, as the system prompt names it
	Model       string
	MaxTokens   int64
	MaxTurns    int
	SystemExtra string // appended to the system prompt
	// AskBeforeBash makes each command wait for the person's approval
	// (the ask-all permission mode).
	AskBeforeBash bool

	// Getenv reads the gateway's address and this sandbox's token
	// (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, HF_ENDPOINT, HF_TOKEN,
	// TRACKIO_DIR).
	Getenv func(string) string
	In     io.Reader // protocol inputs
	Out    io.Writer // protocol events
	Log    *slog.Logger
}

// ErrBadSession is returned by Run for options that name no usable
// session: a usage error, not a failure.
var ErrBadSession = errors.New("bad session")

// Run assembles the agent (transcript, skills, tools, system prompt) and
// serves the protocol on In and Out until shutdown or the end of input.
func Run(ctx context.Context, o RunOptions) error {
	if o.Resume && o.Session == "" {
		return fmt.Errorf("%w: resuming needs a session id", ErrBadSession)
	}
	if o.Session == "" {
		o.Session = sessions.NewID(time.Now())
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tpath, err := TranscriptPath(o.SessionsDir, o.Session)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSession, err)
	}
	var history []Message
	if o.Resume {
		if history, err = LoadTranscript(tpath); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	} else if st, err := os.Stat(tpath); err == nil && st.Size() > 0 {
		return fmt.Errorf("session %s already has a transcript at %s; pass --resume to continue it", o.Session, tpath)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if st, err := os.Stat(o.Workdir); err != nil || !st.IsDir() {
		return fmt.Errorf("workdir %s is not a directory", o.Workdir)
	}
	tr, err := OpenTranscript(tpath)
	if err != nil {
		return err
	}
	defer tr.Close()
	resumed := len(history)
	repaired := Repair(history)
	for _, m := range repaired {
		if err := tr.AppendMessage(m); err != nil {
			return err
		}
		history = append(history, m)
	}

	log := o.Log.With("session", o.Session)
	if o.Getenv("ANTHROPIC_API_KEY") == "" {
		log.Warn("ANTHROPIC_API_KEY is empty; the gateway will refuse requests")
	}
	set, errs := skills.Load(o.SkillsDir)
	for _, e := range errs {
		log.Warn("skill not loaded", "err", e)
	}
	sess := &Session{ID: o.Session, Model: o.Model, Resumed: resumed, Out: protocol.NewWriter(o.Out), Log: log}
	var approver tools.Approver
	if o.AskBeforeBash {
		approver = sess
	}
	hf := o.Getenv("HF_ENDPOINT")
	if hf == "" {
		hf = "https://huggingface.co"
	}
	reg, shell, err := tools.Default(tools.Env{
		Workdir:  o.Workdir,
		StateDir: filepath.Join(o.SessionsDir, o.Session+".shell"),
		Skills:   set,
		Asker:    sess,
		Approver: approver,
		OnTodo: func(items []protocol.TodoItem) {
			sess.Emit(protocol.Event{Type: protocol.EventTodo, Items: items})
		},
		OnJob: func(j protocol.Job) {
			sess.Emit(protocol.Event{Type: protocol.EventJob, Job: &j})
		},
		HFEndpoint: hf, HFToken: o.Getenv("HF_TOKEN"),
	})
	if err != nil {
		return err
	}
	defer shell.Close() // background jobs end with the agent
	if resumed > 0 {
		sess.Last = LastExchange(history, repaired, func(name string, in json.RawMessage) string {
			if t, ok := reg.Get(name); ok {
				if s, ok := t.(tools.Summarizer); ok {
					return s.Summarize(in)
				}
			}
			return ""
		})
	}
	var mounts []Mount
	paths, writable := sandbox.ParseMounts(o.Getenv(sandbox.MountsEnv))
	for i, p := range paths {
		mounts = append(mounts, Mount{Path: p, Writable: writable[i]})
	}
	dataDir := o.DataDir
	if dataDir == "" {
		dataDir = sandbox.DataMount
	}
	memory := LoadMemory(append(paths, dataDir), log)
	system := SystemPrompt(PromptOptions{
		Workdir: o.Workdir, DataDir: o.DataDir, TrackioDir: o.Getenv("TRACKIO_DIR"),
		Image: o.Getenv("MLAGENT_IMAGE"), Skills: set.All(), Extra: o.SystemExtra,
		Mounts: mounts, Memory: memory,
	})
	a, err := New(Config{
		BaseURL: o.Getenv("ANTHROPIC_BASE_URL"), APIKey: o.Getenv("ANTHROPIC_API_KEY"),
		Model: o.Model, MaxTokens: o.MaxTokens, MaxTurns: o.MaxTurns, System: system, Tools: reg,
		SessionID: o.Session, Transcript: tr, History: history, Emit: sess.Emit, Log: log,
	})
	if err != nil {
		return err
	}
	sess.Agent = a
	log.Info("agent started", "model", o.Model, "transcript", tpath, "resumed_messages", resumed, "tools", len(reg.Tools()), "skills", len(set.All()))
	if err := sess.Serve(ctx, o.In); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	cost, ratio, n := a.Usage()
	log.Info("agent stopped", "requests", n, "cost_usd", fmt.Sprintf("%.4f", cost), "cache_read_ratio", fmt.Sprintf("%.2f", ratio))
	return nil
}

// Project memory files, read from each mounted directory and the data
// volume, bounded: they go into every request's system prompt.
var memoryNames = []string{"AGENTS.md", "MLAGENT.md"}

const (
	maxMemoryFile  = 32 << 10
	maxMemoryTotal = 64 << 10
)

// LoadMemory reads the project memory files (AGENTS.md, MLAGENT.md) of
// dirs, in order; a file over the bounds is cut, and what does not fit
// is left out with a warning.
func LoadMemory(dirs []string, log *slog.Logger) []MemoryFile {
	var out []MemoryFile
	total := 0
	for _, d := range dirs {
		for _, n := range memoryNames {
			p := filepath.Join(d, n)
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			st, err := f.Stat()
			if err != nil || !st.Mode().IsRegular() {
				f.Close()
				continue
			}
			b, _ := io.ReadAll(io.LimitReader(f, maxMemoryFile+1))
			f.Close()
			text := strings.ToValidUTF8(string(b), "\uFFFD")
			if len(b) > maxMemoryFile {
				text = clip(text, maxMemoryFile, false) + "\n[cut: the file is longer than 32 KiB]"
			}
			if total+len(text) > maxMemoryTotal {
				log.Warn("project memory left out: over 64 KiB in all", "file", p)
				continue
			}
			total += len(text)
			out = append(out, MemoryFile{Path: p, Text: text})
		}
	}
	return out
}

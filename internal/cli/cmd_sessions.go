package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/store"
)

func init() {
	register(&Command{
		Name:    "sessions",
		Summary: "list chat sessions (id, title, started, turns, cost)",
		Run:     runSessions,
	})
	register(&Command{
		Interactive: true,
		Name:        "resume",
		Summary:     "reopen a session in a new sandbox with its volumes and transcript",
		Run:         runResume,
	})
}

const sessionsHelp = `Lists the sessions of "mlagent run", most recently used first. Transcripts
are on the data volume ($MLAGENT_HOME/volumes/data/sessions/<id>.jsonl);
"mlagent resume ID" continues one.`

func runSessions(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "sessions", "sessions [flags]", sessionsHelp)
	limit := fs.Int("n", 20, "show at most this many sessions; 0 = all")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "mlagent sessions: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	idx, closeDB, err := openSessionIndex(ctx, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sessions: %v\n", err)
		return ExitFailure
	}
	defer closeDB()
	list, err := idx.List(ctx, *limit)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sessions: %v\n", err)
		return ExitFailure
	}
	if *asJSON {
		for _, s := range list {
			// A title is pasted text: C1 controls stay raw in Go's JSON.
			line, _ := json.Marshal(map[string]any{
				"id": s.ID, "title": s.Title, "model": s.Model, "started": s.Started, "updated": s.Updated,
				"turns": s.Turns, "cost_usd": s.CostUSD, "volumes": s.Volumes, "gpu": s.GPU, "sandbox": s.Sandbox,
			})
			env.Stdout.Write(append(sanitize.JSON(line), '\n'))
		}
		return ExitOK
	}
	if len(list) == 0 {
		fmt.Fprintln(env.Stdout, `no sessions yet; start one with: mlagent run "your task"`)
		return ExitOK
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTITLE\tSTARTED\tTURNS\tCOST")
	for _, s := range list {
		title := sanitize.Line(s.Title, 80) // pasted text may hold anything
		if title == "" {
			title = "(no message yet)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t$%.4f\n", s.ID, title, s.Started.Local().Format(time.DateTime), s.Turns, s.CostUSD)
	}
	tw.Flush()
	return ExitOK
}

func openSessionIndex(ctx context.Context, env *Env) (*sessions.Index, func(), error) {
	db, err := store.Open(ctx, env.Config.StorePath())
	if err != nil {
		return nil, nil, err
	}
	idx, err := sessions.Open(ctx, db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return idx, func() { db.Close() }, nil
}

const resumeHelp = `Reopens a session in a new sandbox with the same volumes and image (--image
names another); the agent reloads the
full transcript, so nothing answered is lost, even after the CLI was killed.
ID defaults to the most recently used session ("latest" says so explicitly);
PROMPT, if given, is sent as the next message (and is required with -p).`

func runResume(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "resume", "resume [flags] [ID [PROMPT]]", resumeHelp)
	var cf chatFlags
	cf.register(fs, env.Config, false)
	pos, code := parseInterleaved(fs, args, env)
	if code >= 0 {
		return code
	}
	id := ""
	if len(pos) > 0 {
		id = pos[0]
	}
	s, code := sessionToResume(ctx, env, "resume", fs, &cf, id)
	if code >= 0 {
		return code
	}
	var prompt string
	if len(pos) > 1 {
		prompt = strings.Join(pos[1:], " ")
	}
	return runChat(ctx, env, "resume", &cf, chatSession{Session: s, Prompt: prompt, Resume: true})
}

// sessionToResume finds the session to reopen (id, or the latest for ""
// or "latest") and takes its model and image unless flags name others.
func sessionToResume(ctx context.Context, env *Env, name string, fs *flag.FlagSet, cf *chatFlags, id string) (sessions.Session, int) {
	idx, closeDB, err := openSessionIndex(ctx, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent %s: %v\n", name, err)
		return sessions.Session{}, ExitFailure
	}
	var s sessions.Session
	if id == "" || id == "latest" {
		s, err = idx.Latest(ctx)
	} else {
		s, err = idx.Get(ctx, id)
	}
	closeDB()
	if errors.Is(err, sessions.ErrNotFound) {
		if id == "" {
			fmt.Fprintf(env.Stderr, "mlagent %s: no sessions yet; start one with: mlagent run \"your task\"\n", name)
		} else {
			fmt.Fprintf(env.Stderr, "mlagent %s: no session %q; mlagent sessions lists them\n", name, id)
		}
		return s, ExitUsage
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent %s: %v\n", name, err)
		return s, ExitFailure
	}
	if !flagSet(fs, "model") && s.Model != "" {
		cf.model, cf.sessionModel = s.Model, true
	}
	// The session's image unless --image names another ("" for the host's).
	if flagSet(fs, "image") {
		s.Image = cf.image
	}
	return s, -1
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

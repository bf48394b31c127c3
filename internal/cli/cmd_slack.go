package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/secrets"
	"github.com/mlagent/mlagent/internal/slackbot"
	"github.com/mlagent/mlagent/internal/volume"
)

func init() {
	register(&Command{
		Name:    "slack",
		Service: true,
		Summary: "serve the agent in Slack threads (Socket Mode): a mention or DM starts a session",
		Run:     runSlack,
	})
}

const slackHelp = `Runs a Slack app in Socket Mode (no public URL). A mention or a DM starts a
session; its thread is the session: replies continue it (in a new sandbox with
the same volumes and transcript if the old one ended). The agent's text streams
into the thread, tool calls appear as compact lines, questions as buttons (or a
free-text reply), the plan as a checklist, writes outside the sandbox as
Allow/Deny buttons. Files attached in the thread are saved on the host into the
data volume (/data/uploads/<session>/) and announced to the agent; files it
shares (share_file) are uploaded back. "@mlagent status" in a thread reports
progress. Ctrl-C stops the app and the sandboxes it started (threads can be
continued after a restart).

Set-up: create a Slack app with Socket Mode on, an app-level token with
connections:write, bot scopes app_mentions:read, chat:write, im:history,
channels:history, files:read, files:write, and events app_mention,
message.im, message.channels; then store both tokens:
  mlagent secret set slack SLACK_BOT_TOKEN=@- SLACK_APP_TOKEN=@-   (or KEY=@file)

Config ([slack] in config.toml):
  users = ["U012ABC"]        Slack user ids allowed ("*": anyone in the workspace)
  channels = ["C034DEF"]     channels where mentions are served (DMs need only users)
  session_budget_usd = 5     each session's sandbox budget (default [run] budget_usd)
  user_budget_usd = 20       all of one user's Slack sessions together
  max_sandboxes = 2          sessions running at once; others are told to wait
  max_file_mb = 1024         largest attached file downloaded
Anyone else gets a polite refusal and starts nothing.`

func runSlack(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "slack", "slack [--model M] [--max-sandboxes N]", slackHelp)
	cfg := env.Config
	model := fs.String("model", cfg.Run.Model, "model for the sessions (default: the newest Sonnet-class model the key can use)")
	maxSandboxes := fs.Int("max-sandboxes", cfg.Slack.MaxSandboxes, "sessions running at once")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(env.Stderr, "mlagent slack: unexpected argument %q; see --help\n", fs.Arg(0))
		return ExitUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "mlagent slack: "+format+"\n", a...)
		return ExitFailure
	}
	st := secrets.Open(cfg.SecretsPath())
	bot, err := st.Resolve(secrets.SlackBotToken, env.Getenv)
	if err != nil {
		return fail("%v", err)
	}
	app, err := st.Resolve(secrets.SlackAppToken, env.Getenv)
	if err != nil {
		return fail("%v", err)
	}
	if bot == "" || app == "" {
		return fail("no Slack tokens; store them (they stay in this process, never in a sandbox):\n  mlagent secret set slack SLACK_BOT_TOKEN=@- SLACK_APP_TOKEN=@-")
	}
	if len(cfg.Slack.Users) == 0 {
		fmt.Fprintln(env.Stderr, "mlagent slack: warning: [slack] users is empty, so everyone will be refused; add Slack user ids (or \"*\")")
	}
	keys, err := launch.ResolveKeys(cfg, env.Getenv)
	if err != nil {
		return fail("%v", err)
	}
	if keys.Model == "" && cfg.Run.BaseURL == "" {
		return fail("no model key: mlagent secret set anthropic ANTHROPIC_API_KEY=@-")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	host, err := launch.Start(ctx, keys.Options(cfg, env.Log.With("cmd", "slack"), cfg.Run.BaseURL))
	if err != nil {
		return fail("%v", err)
	}
	defer host.Close()
	budget := cfg.Slack.SessionBudgetUSD
	if budget == 0 {
		budget = cfg.Run.BudgetUSD
	}
	dash := ""
	if l := cfg.Dashboard.Listen; l != "" {
		dash = "http://" + strings.TrimPrefix(l, "http://")
	}
	b, err := slackbot.New(ctx, slackbot.Config{
		BotToken: bot, AppToken: app, APIURL: cfg.Slack.APIURL,
		Users: cfg.Slack.Users, Channels: cfg.Slack.Channels,
		SessionBudgetUSD: budget, UserBudgetUSD: cfg.Slack.UserBudgetUSD, MaxSandboxes: *maxSandboxes,
		Model: *model, MaxTurns: cfg.Run.MaxTurns, DashboardURL: dash, MaxFileBytes: cfg.Slack.MaxFileMB << 20,
	}, host, volume.New(cfg.VolumesDir()), env.Log.With("cmd", "slack"))
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(env.Stderr, "mlagent slack: connected; serving %d user(s) in %d channel(s) and DMs, at most %d sandboxes. Ctrl-C stops.\n",
		len(cfg.Slack.Users), len(cfg.Slack.Channels), *maxSandboxes)
	if err := b.Run(ctx); err != nil {
		return fail("%v", err)
	}
	return ExitOK
}

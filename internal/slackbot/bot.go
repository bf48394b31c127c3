// Package slackbot is the Slack front end (`mlagent slack`): a Socket Mode
// app in which a mention or a DM starts a session and its thread is the
// session. It renders the agent's events into the thread (streamed text,
// tool lines, the plan, questions as buttons), downloads attached files on
// the host into the data volume, uploads the files the agent shares, and
// decides who may use it (allowlists, per-user budget, a cap on concurrent
// sandboxes). It drives agents only through launch.Host.StartAgent; the
// Slack tokens stay in this process.
package slackbot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/volume"
)

// Config says who may use the bot and how much.
type Config struct {
	BotToken, AppToken string
	// APIURL is the Web API base ("" = Slack's); tests point it at a fake.
	APIURL string
	// Users and Channels are allowlists of Slack ids. A user not listed
	// gets a polite refusal; so does any mention in a channel not listed
	// (DMs need only the user). "*" allows everyone.
	Users, Channels []string
	// SessionBudgetUSD bounds each session's sandbox token; UserBudgetUSD
	// bounds all of one user's Slack sessions together (0: no bound).
	SessionBudgetUSD, UserBudgetUSD float64
	// MaxSandboxes caps the sessions running at once (default 2).
	MaxSandboxes int
	Model        string
	MaxTurns     int
	// DashboardURL is shown by `status`.
	DashboardURL string
	// MaxFileBytes bounds each attached file downloaded (default 1 GiB).
	MaxFileBytes int64
	// UpdateInterval spaces edits of one message (default 1.1 s, Slack's
	// pace for chat.update).
	UpdateInterval time.Duration
	// CPUs and MemoryBytes limit each sandbox where the backend can.
	CPUs        float64
	MemoryBytes int64
}

// Bot serves Slack. Its methods are safe for concurrent use.
type Bot struct {
	cfg     Config
	api     *slack.Client
	sm      *socketmode.Client
	p       poster
	host    *launch.Host
	volumes *volume.Store
	db      *store.DB
	log     *slog.Logger
	botUser string

	mu      sync.Mutex
	threads map[string]*thread // channel/thread_ts
	running int
	wg      sync.WaitGroup
}

// New checks the bot token (auth.test) and prepares the Socket Mode client.
func New(ctx context.Context, cfg Config, host *launch.Host, volumes *volume.Store, log *slog.Logger) (*Bot, error) {
	if cfg.BotToken == "" || cfg.AppToken == "" {
		return nil, errors.New("slack: the bot token (xoxb-) and the app-level token (xapp-) are both needed")
	}
	if !strings.HasPrefix(cfg.AppToken, "xapp-") {
		return nil, errors.New("slack: SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write")
	}
	if cfg.MaxSandboxes <= 0 {
		cfg.MaxSandboxes = 2
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = 1 << 30
	}
	if cfg.UpdateInterval <= 0 {
		cfg.UpdateInterval = 1100 * time.Millisecond
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []slack.Option{slack.OptionAppLevelToken(cfg.AppToken)}
	if cfg.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(cfg.APIURL))
	}
	api := slack.New(cfg.BotToken, opts...)
	auth, err := api.AuthTestContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("slack: auth.test with the bot token: %w", err)
	}
	b := &Bot{cfg: cfg, api: api, p: webAPI{api}, host: host, volumes: volumes, db: host.DB(), log: log,
		botUser: auth.UserID, threads: map[string]*thread{}}
	if err := b.db.Migrate(ctx, migrations...); err != nil {
		return nil, fmt.Errorf("slack: %w", err)
	}
	b.sm = socketmode.New(api, socketmode.OptionDebug(os.Getenv("MLAGENT_SLACK_DEBUG") != ""))
	return b, nil
}

// Run serves until ctx ends, then stops every session's sandbox (their
// sessions can be continued from the thread after a restart).
func (b *Bot) Run(ctx context.Context) error {
	go b.sm.RunContext(ctx)
	defer b.shutdown()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-b.sm.Events:
			if !ok {
				return errors.New("slack: the Socket Mode connection closed")
			}
			b.handle(ctx, ev)
		}
	}
}

func (b *Bot) shutdown() {
	b.mu.Lock()
	threads := make([]*thread, 0, len(b.threads))
	for _, t := range b.threads {
		threads = append(threads, t)
	}
	b.mu.Unlock()
	for _, t := range threads {
		t.stop()
	}
	b.wg.Wait()
}

func (b *Bot) handle(ctx context.Context, ev socketmode.Event) {
	switch ev.Type {
	case socketmode.EventTypeConnected:
		b.log.Info("slack connected")
	case socketmode.EventTypeInvalidAuth:
		b.log.Error("slack refused the app-level token (SLACK_APP_TOKEN)")
	case socketmode.EventTypeConnectionError:
		b.log.Warn("slack connection error; retrying")
	case socketmode.EventTypeEventsAPI:
		// Ack first: Slack redelivers what is not acknowledged in 3 s.
		b.sm.Ack(*ev.Request)
		api, ok := ev.Data.(slackevents.EventsAPIEvent)
		if !ok || api.Type != slackevents.CallbackEvent {
			return
		}
		switch e := api.InnerEvent.Data.(type) {
		case *slackevents.AppMentionEvent:
			if e.BotID != "" || e.User == b.botUser {
				return
			}
			b.message(ctx, incoming{user: e.User, channel: e.Channel, ts: e.TimeStamp, thread: e.ThreadTimeStamp,
				text: e.Text, files: e.Files, mention: true})
		case *slackevents.MessageEvent:
			b.messageEvent(ctx, e)
		}
	case socketmode.EventTypeInteractive:
		b.sm.Ack(*ev.Request)
		cb, ok := ev.Data.(slack.InteractionCallback)
		if ok && cb.Type == slack.InteractionTypeBlockActions {
			b.click(ctx, cb)
		}
	case socketmode.EventTypeSlashCommand:
		b.sm.Ack(*ev.Request)
	}
}

// messageEvent handles a DM, or a reply in a thread that is a session.
// Mentions in channels come as app_mention and are handled there.
func (b *Bot) messageEvent(ctx context.Context, e *slackevents.MessageEvent) {
	if e.BotID != "" || e.User == "" || e.User == b.botUser || (e.SubType != "" && e.SubType != "file_share") {
		return
	}
	in := incoming{user: e.User, channel: e.Channel, ts: e.TimeStamp, thread: e.ThreadTimeStamp, text: e.Text}
	if e.Message != nil {
		in.files = e.Message.Files
	}
	if e.ChannelType == "im" {
		b.message(ctx, in)
		return
	}
	if strings.Contains(e.Text, "<@"+b.botUser+">") || e.ThreadTimeStamp == "" {
		return // the app_mention event carries it; unthreaded chatter is not for us
	}
	if b.knownThread(ctx, e.Channel, e.ThreadTimeStamp) {
		b.message(ctx, in)
	}
}

// incoming is a message for the bot.
type incoming struct {
	user, channel, ts, thread, text string
	files                           []slack.File
	mention                         bool
}

func (in incoming) root() string {
	if in.thread != "" {
		return in.thread
	}
	return in.ts
}

func allowed(list []string, id string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, id)
}

var mentionRE = regexp.MustCompile(`<@[A-Z0-9]+>`)

// message routes one message: refusal, status, an answer to a pending
// question, or a turn for the thread's agent.
func (b *Bot) message(ctx context.Context, in incoming) {
	isDM := strings.HasPrefix(in.channel, "D")
	if !allowed(b.cfg.Users, in.user) || (!isDM && !allowed(b.cfg.Channels, in.channel)) {
		b.log.Info("slack: refused", "user", in.user, "channel", in.channel)
		where := "you"
		if !isDM && allowed(b.cfg.Users, in.user) {
			where = "this channel"
		}
		b.say(ctx, in.channel, in.root(), fmt.Sprintf("Sorry, I'm not set up to work for %s. Ask whoever runs `mlagent slack` to add you to its allowlist.", where))
		return
	}
	text := strings.TrimSpace(mentionRE.ReplaceAllString(in.text, ""))
	t := b.thread(ctx, in.channel, in.root(), in.user)
	if strings.EqualFold(text, "status") {
		b.say(ctx, in.channel, in.root(), t.status(ctx))
		return
	}
	t.userMessage(ctx, in.user, text, in.files)
}

// say posts one plain message in a thread.
func (b *Bot) say(ctx context.Context, channel, thread, text string) {
	if _, err := b.p.post(ctx, channel, thread, text, nil); err != nil {
		b.log.Warn("slack post", "err", err)
	}
}

// thread returns the thread's state, loading its session from the store
// or making a new one owned by user.
func (b *Bot) thread(ctx context.Context, channel, ts, user string) *thread {
	key := channel + "/" + ts
	b.mu.Lock()
	t := b.threads[key]
	if t == nil {
		t = &thread{bot: b, channel: channel, ts: ts, owner: user}
		b.threads[key] = t
	}
	b.mu.Unlock()
	t.load(ctx)
	return t
}

func (b *Bot) knownThread(ctx context.Context, channel, ts string) bool {
	b.mu.Lock()
	_, ok := b.threads[channel+"/"+ts]
	b.mu.Unlock()
	if ok {
		return true
	}
	_, _, err := b.lookupThread(ctx, channel, ts)
	return err == nil
}

// acquire takes a sandbox slot; false when all are busy.
func (b *Bot) acquire() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running >= b.cfg.MaxSandboxes {
		return false
	}
	b.running++
	return true
}

func (b *Bot) release() {
	b.mu.Lock()
	b.running--
	b.mu.Unlock()
}

// click handles a button: an answer to a question or an approval.
func (b *Bot) click(ctx context.Context, cb slack.InteractionCallback) {
	if len(cb.ActionCallback.BlockActions) == 0 {
		return
	}
	act := cb.ActionCallback.BlockActions[0]
	channel := cb.Channel.ID
	if channel == "" {
		channel = cb.Container.ChannelID
	}
	root := cb.Message.ThreadTimestamp
	if root == "" {
		root = cb.Container.ThreadTs
	}
	if !allowed(b.cfg.Users, cb.User.ID) {
		b.say(ctx, channel, root, "Sorry, only people on the allowlist can answer me.")
		return
	}
	b.mu.Lock()
	t := b.threads[channel+"/"+root]
	b.mu.Unlock()
	if t == nil {
		return
	}
	t.clicked(ctx, cb.User.ID, act.ActionID, act.Value, cb.Message.Timestamp)
}

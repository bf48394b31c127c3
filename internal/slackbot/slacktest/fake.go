// Package slacktest is a strict fake of the Slack Web API methods and the
// Socket Mode WebSocket that `mlagent slack` uses, on loopback. It wants
// the bot token on Web API calls and the app-level token on
// apps.connections.open, rejects unknown channels, messages over Slack's
// size limits and chat.update calls on one message faster than once a
// second (ratelimited, as Slack does), and requires every envelope it
// sends over the socket to be acknowledged.
package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Message is a message the bot posted (or a user message the test sent).
type Message struct {
	Channel, TS, ThreadTS, User, Text string
	Blocks                            json.RawMessage
	Updates                           int
	lastUpdate                        time.Time
}

// Upload is a file the bot shared.
type Upload struct {
	Channel, ThreadTS, Filename, Title string
	Data                               []byte
}

// Fake is the fake Slack.
type Fake struct {
	*httptest.Server
	t                  *testing.T
	BotToken, AppToken string
	BotUserID, BotID   string
	Channels           map[string]bool // known channel ids
	UpdateMinInterval  time.Duration
	mu                 sync.Mutex
	messages           []*Message
	uploads            []Upload
	pending            map[string]*Upload // file id → upload in progress
	files              map[string][]byte  // user files served for download, by path
	clock              int64
	conn               *websocket.Conn
	connected          chan struct{}
	acks               map[string]chan struct{}
	RateLimited        int // chat.update calls refused as too fast
	envelopes          int
	Calls              []string
	bad                []string // protocol violations seen
}

// New starts a fake with channels C1 and the DM channel D1.
func New(t *testing.T) *Fake {
	f := &Fake{
		t: t, BotToken: "xoxb-fake-bot-token-1234", AppToken: "xapp-fake-app-token-5678",
		BotUserID: "UBOT", BotID: "BBOT", Channels: map[string]bool{"C1": true, "C2": true, "D1": true},
		UpdateMinInterval: time.Second, pending: map[string]*Upload{}, files: map[string][]byte{},
		clock: 1700000000, connected: make(chan struct{}), acks: map[string]chan struct{}{},
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.mu.Lock()
		if f.conn != nil {
			f.conn.Close()
		}
		bad := f.bad
		f.mu.Unlock()
		f.Close()
		for _, b := range bad {
			t.Errorf("fake Slack: %s", b)
		}
	})
	return f
}

// APIURL is the Web API base URL for slack.OptionAPIURL.
func (f *Fake) APIURL() string { return f.URL + "/api/" }

func (f *Fake) violation(format string, args ...any) {
	f.mu.Lock()
	f.bad = append(f.bad, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *Fake) nextTS() string {
	f.clock++
	return strconv.FormatInt(f.clock, 10) + ".000100"
}

// AddFile makes a user's file downloadable and returns its file object
// (as in a message event's "files").
func (f *Fake) AddFile(name string, data []byte) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("F%d", len(f.files)+100)
	path := "/api/files-pri/T1-" + id + "/download/" + url.PathEscape(name)
	f.files[path] = data
	return map[string]any{"id": id, "name": name, "size": len(data), "mimetype": "text/csv",
		"url_private_download": f.URL + path, "url_private": f.URL + path}
}

// Messages returns a copy of what was posted, in order.
func (f *Fake) Messages() []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Message, len(f.messages))
	for i, m := range f.messages {
		out[i] = *m
	}
	return out
}

// Uploads returns the files the bot shared.
func (f *Fake) Uploads() []Upload {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Upload(nil), f.uploads...)
}

func (f *Fake) reply(w http.ResponseWriter, v map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *Fake) fail(w http.ResponseWriter, code string) {
	f.reply(w, map[string]any{"ok": false, "error": code})
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/socket":
		f.serveSocket(w, r)
		return
	case strings.HasPrefix(r.URL.Path, "/api/files-pri/"):
		f.mu.Lock()
		data, ok := f.files[r.URL.Path]
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+f.BotToken {
			http.Redirect(w, r, "/signin?redir="+url.QueryEscape(r.URL.Path), http.StatusFound)
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
		return
	case strings.HasPrefix(r.URL.Path, "/api/upload/"):
		f.serveUpload(w, r, strings.TrimPrefix(r.URL.Path, "/api/upload/"))
		return
	}
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if !ok || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.Calls = append(f.Calls, method)
	f.mu.Unlock()
	params := url.Values{}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded", "":
		r.ParseForm()
		params = r.PostForm
	case "application/json":
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		for k, v := range m {
			if s, ok := v.(string); ok {
				params.Set(k, s)
			} else {
				b, _ := json.Marshal(v)
				params.Set(k, string(b))
			}
		}
	}
	if t := params.Get("token"); t != "" {
		token = t
	}
	want := f.BotToken
	if method == "apps.connections.open" {
		want = f.AppToken
	}
	if token != want {
		f.fail(w, "invalid_auth")
		return
	}
	switch method {
	case "auth.test":
		f.reply(w, map[string]any{"ok": true, "user_id": f.BotUserID, "bot_id": f.BotID, "team_id": "T1", "user": "mlagent", "team": "Test"})
	case "apps.connections.open":
		f.reply(w, map[string]any{"ok": true, "url": "ws" + strings.TrimPrefix(f.URL, "http") + "/socket"})
	case "chat.postMessage", "chat.postEphemeral":
		f.postMessage(w, method, params)
	case "chat.update":
		f.update(w, params)
	case "files.getUploadURLExternal":
		n, _ := strconv.Atoi(params.Get("length"))
		if params.Get("filename") == "" || n <= 0 {
			f.fail(w, "invalid_arguments")
			return
		}
		f.mu.Lock()
		id := fmt.Sprintf("FUP%d", len(f.pending)+len(f.uploads)+1)
		f.pending[id] = &Upload{Filename: params.Get("filename")}
		f.mu.Unlock()
		f.reply(w, map[string]any{"ok": true, "upload_url": f.URL + "/api/upload/" + id, "file_id": id})
	case "files.completeUploadExternal":
		var files []struct{ ID, Title string }
		json.Unmarshal([]byte(params.Get("files")), &files)
		ch := params.Get("channel_id")
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(files) != 1 || f.pending[files[0].ID] == nil || f.pending[files[0].ID].Data == nil || !f.Channels[ch] {
			f.fail(w, "invalid_arguments")
			return
		}
		up := f.pending[files[0].ID]
		delete(f.pending, files[0].ID)
		up.Channel, up.ThreadTS, up.Title = ch, params.Get("thread_ts"), files[0].Title
		f.uploads = append(f.uploads, *up)
		f.reply(w, map[string]any{"ok": true, "files": []map[string]any{{"id": files[0].ID, "title": up.Title}}})
	default:
		f.fail(w, "unknown_method")
	}
}

func (f *Fake) postMessage(w http.ResponseWriter, method string, p url.Values) {
	ch := p.Get("channel")
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.Channels[ch] {
		f.fail(w, "channel_not_found")
		return
	}
	text := p.Get("text")
	if text == "" && p.Get("blocks") == "" {
		f.fail(w, "no_text")
		return
	}
	if len(text) > 40000 {
		f.fail(w, "msg_too_long")
		return
	}
	if !validBlocks(p.Get("blocks")) {
		f.fail(w, "invalid_blocks")
		return
	}
	m := &Message{Channel: ch, TS: f.nextTS(), ThreadTS: p.Get("thread_ts"), User: f.BotUserID, Text: text, Blocks: json.RawMessage(p.Get("blocks"))}
	if method == "chat.postEphemeral" {
		m.User = "ephemeral:" + p.Get("user")
	}
	f.messages = append(f.messages, m)
	f.reply(w, map[string]any{"ok": true, "channel": ch, "ts": m.TS, "message_ts": m.TS})
}

// validBlocks accepts "" or a JSON array of blocks each with a type, and
// section texts within Slack's 3,000 characters.
func validBlocks(s string) bool {
	if s == "" {
		return true
	}
	var blocks []map[string]any
	if json.Unmarshal([]byte(s), &blocks) != nil || len(blocks) > 50 {
		return false
	}
	for _, b := range blocks {
		if b["type"] == nil {
			return false
		}
		if t, ok := b["text"].(map[string]any); ok {
			if s, _ := t["text"].(string); len(s) > 3000 {
				return false
			}
		}
	}
	return true
}

func (f *Fake) update(w http.ResponseWriter, p url.Values) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var m *Message
	for _, x := range f.messages {
		if x.TS == p.Get("ts") && x.Channel == p.Get("channel") {
			m = x
		}
	}
	if m == nil {
		f.fail(w, "message_not_found")
		return
	}
	if !validBlocks(p.Get("blocks")) || len(p.Get("text")) > 40000 {
		f.fail(w, "invalid_blocks")
		return
	}
	now := time.Now()
	if !m.lastUpdate.IsZero() && now.Sub(m.lastUpdate) < f.UpdateMinInterval-100*time.Millisecond {
		f.RateLimited++
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		f.reply(w, map[string]any{"ok": false, "error": "ratelimited"})
		return
	}
	m.lastUpdate = now
	m.Updates++
	if t := p.Get("text"); t != "" {
		m.Text = t
	}
	if b := p.Get("blocks"); b != "" {
		m.Blocks = json.RawMessage(b)
	}
	f.reply(w, map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text})
}

func (f *Fake) serveUpload(w http.ResponseWriter, r *http.Request, id string) {
	file, hdr, err := r.FormFile("file")
	if err != nil {
		http.Error(w, "want a multipart file", http.StatusBadRequest)
		return
	}
	data, _ := io.ReadAll(file)
	f.mu.Lock()
	defer f.mu.Unlock()
	up := f.pending[id]
	if up == nil || hdr.Filename != up.Filename {
		http.Error(w, "unknown upload", http.StatusNotFound)
		return
	}
	up.Data = data
	fmt.Fprintf(w, "OK - %d", len(data))
}

// Slack does not check the Origin the client sends.
var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (f *Fake) serveSocket(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	f.mu.Lock()
	if f.conn != nil {
		f.conn.Close()
	}
	f.conn = c
	f.mu.Unlock()
	c.WriteJSON(map[string]any{"type": "hello", "num_connections": 1,
		"connection_info": map[string]any{"app_id": "A1"}, "debug_info": map[string]any{"host": "fake"}})
	select {
	case <-f.connected:
	default:
		close(f.connected)
	}
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if json.Unmarshal(b, &ack) != nil || ack.EnvelopeID == "" {
			f.violation("socket message that is no ack: %s", b)
			continue
		}
		f.mu.Lock()
		ch := f.acks[ack.EnvelopeID]
		delete(f.acks, ack.EnvelopeID)
		f.mu.Unlock()
		if ch == nil {
			f.violation("ack of an unknown envelope %s", ack.EnvelopeID)
			continue
		}
		close(ch)
	}
}

// WaitConnected waits for the bot's Socket Mode connection.
func (f *Fake) WaitConnected(timeout time.Duration) bool {
	select {
	case <-f.connected:
		return true
	case <-time.After(timeout):
		return false
	}
}

// send pushes one envelope and waits for its ack (Slack retries
// unacknowledged envelopes; the bot must ack within 3 s).
func (f *Fake) send(typ string, payload any) {
	f.t.Helper()
	f.mu.Lock()
	f.envelopes++
	id := fmt.Sprintf("env-%d", f.envelopes)
	ack := make(chan struct{})
	f.acks[id] = ack
	c := f.conn
	f.mu.Unlock()
	if c == nil {
		f.t.Fatal("fake Slack: no socket connection")
	}
	f.mu.Lock()
	err := c.WriteJSON(map[string]any{"envelope_id": id, "type": typ, "payload": payload, "accepts_response_payload": false})
	f.mu.Unlock()
	if err != nil {
		f.t.Fatalf("fake Slack: write envelope: %v", err)
	}
	select {
	case <-ack:
	case <-time.After(3 * time.Second):
		f.t.Errorf("fake Slack: envelope %s (%s) not acknowledged within 3 s", id, typ)
	}
}

// Event sends an Events API event (app_mention, message) from a user and
// returns its ts. files may be nil.
func (f *Fake) Event(kind, user, channel, threadTS, text string, files []map[string]any) string {
	f.t.Helper()
	f.mu.Lock()
	ts := f.nextTS()
	f.messages = append(f.messages, &Message{Channel: channel, TS: ts, ThreadTS: threadTS, User: user, Text: text})
	f.mu.Unlock()
	ev := map[string]any{"type": kind, "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts}
	if threadTS != "" {
		ev["thread_ts"] = threadTS
	}
	if strings.HasPrefix(channel, "D") {
		ev["channel_type"] = "im"
	} else {
		ev["channel_type"] = "channel"
	}
	if files != nil {
		ev["files"] = files
		if kind == "message" {
			ev["subtype"] = "file_share"
		}
	}
	f.send("events_api", map[string]any{"token": "verification-unused", "team_id": "T1", "api_app_id": "A1",
		"type": "event_callback", "event_id": "Ev" + ts, "event_time": time.Now().Unix(), "event": ev})
	return ts
}

// Click sends a block_actions interaction: user pressed the button with
// actionID and value on the bot's message msg.
func (f *Fake) Click(user string, msg Message, actionID, value string) {
	f.t.Helper()
	f.send("interactive", map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user}, "team": map[string]any{"id": "T1"},
		"channel":   map[string]any{"id": msg.Channel},
		"container": map[string]any{"type": "message", "message_ts": msg.TS, "channel_id": msg.Channel, "thread_ts": msg.ThreadTS},
		"message":   map[string]any{"ts": msg.TS, "thread_ts": msg.ThreadTS, "text": msg.Text},
		"actions":   []map[string]any{{"type": "button", "action_id": actionID, "block_id": "b", "value": value, "action_ts": f.nextTS()}},
	})
}

// WaitFor polls until cond holds over the posted messages, or fails the
// test after timeout with what was posted.
func (f *Fake) WaitFor(what string, timeout time.Duration, cond func(msgs []Message, ups []Upload) bool) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond(f.Messages(), f.Uploads()) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	var b strings.Builder
	for _, m := range f.Messages() {
		fmt.Fprintf(&b, "  [%s %s thread=%s by %s] %q blocks=%s\n", m.Channel, m.TS, m.ThreadTS, m.User, m.Text, m.Blocks)
	}
	f.t.Fatalf("fake Slack: timed out waiting for %s; messages:\n%s", what, b.String())
}

// WaitText waits for a message in thread whose text contains s, and
// returns it.
func (f *Fake) WaitText(thread, s string, timeout time.Duration) Message {
	f.t.Helper()
	var found Message
	f.WaitFor(fmt.Sprintf("%q in thread %s", s, thread), timeout, func(msgs []Message, _ []Upload) bool {
		for _, m := range msgs {
			if m.ThreadTS == thread && strings.Contains(m.Text, s) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

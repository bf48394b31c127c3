package launch

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/gdrive/gdrivetest"
	"github.com/mlagent/mlagent/internal/notion/notiontest"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/secrets"
	"github.com/mlagent/mlagent/internal/testbin"
)

// pyServices calls the Drive and Notion routes from inside, as the gdrive
// and notion skills do, and prints what came back.
const pyServices = `
import os, json, urllib.request, urllib.error
base, tok = os.environ["ANTHROPIC_BASE_URL"], os.environ["ANTHROPIC_API_KEY"]
def call(method, path, body=None, extra={}):
    h = {"Authorization": "Bearer " + tok}
    h.update(extra)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
print("DRIVE-READ", *call("GET", "/gdrive/drive/v3/files/" + os.environ["FILE_ID"] + "?alt=media"))
print("DRIVE-WRITE", *call("POST", "/gdrive/upload/drive/v3/files?uploadType=multipart", {"name": "x"}))
nv = {"Notion-Version": "2022-06-28"}
print("NOTION-READ", *call("GET", "/notion/v1/pages/" + os.environ["PARENT"], None, nv))
print("NOTION-WRITE", *call("POST", "/notion/v1/pages", {"parent": {"page_id": os.environ["PARENT"]},
    "properties": {"title": {"title": [{"type": "text", "text": {"content": "Run report"}}]}}}, nv))
`

// No Google, Notion or Slack credential is readable inside a sandbox, even
// while the sandbox uses the Drive and Notion routes that hold them: not
// in its environment, its processes, its files or the routes' replies.
func TestServiceCredentialsNeverInside(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 is not installed")
	}
	ctx := context.Background()
	drive := gdrivetest.New(t)
	fileID := drive.Add(gdrivetest.Item{Name: "labels.csv", MimeType: "text/csv", Parents: []string{"root"}, Data: []byte("id,label\n1,cat\n")})
	nt := notiontest.New(t)
	parent := nt.AddPage("Reports", "")

	home, err := os.MkdirTemp("", "mlh")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	cfg := config.Defaults()
	cfg.Home = home
	cfg.GDrive.Upstream = drive.URL
	cfg.Notion.Upstream = nt.URL
	cfg.Notion.Parents = []string{"https://www.notion.so/Reports-" + strings.ReplaceAll(parent, "-", "")}
	const slackBot, slackApp = "xoxb-SENTINEL-slack-bot-token", "xapp-SENTINEL-slack-app-token"
	st := secrets.Open(cfg.SecretsPath())
	for name, kv := range map[string]map[string]string{
		"google": {secrets.GoogleCredentials: string(drive.AuthorizedUserJSON())},
		"notion": {secrets.NotionToken: nt.Token},
		"slack":  {secrets.SlackBotToken: slackBot, secrets.SlackAppToken: slackApp},
	} {
		if err := st.Set(name, kv); err != nil {
			t.Fatal(err)
		}
	}
	h, err := Start(ctx, Options{Config: cfg, Upstream: "http://127.0.0.1:1", ModelKey: realKey, Binary: testbin.Path(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sb, err := h.NewSandbox(ctx, SandboxRequest{BudgetUSD: 1, Env: map[string]string{"FILE_ID": fileID, "PARENT": parent}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Terminate(ctx)

	var out, errb bytes.Buffer
	code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/usr/bin/python3", "-c", pyServices}, Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		t.Fatalf("python in sandbox: code %d err %v\n%s%s", code, err, out.String(), errb.String())
	}
	got := out.String()
	for _, want := range []string{"DRIVE-READ 200 id,label\n1,cat", "DRIVE-WRITE 403", "NOTION-READ 200", "NOTION-WRITE 200"} {
		if !strings.Contains(got, want) {
			t.Errorf("sandbox calls: want %q in\n%s", want, got)
		}
	}
	if len(nt.ChildrenOf(parent)) != 1 {
		t.Errorf("Notion report pages = %d; want 1", len(nt.ChildrenOf(parent)))
	}

	var look bytes.Buffer
	sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/bin/sh", "-c",
		"env; for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null;" +
			" grep -rs . /etc /workspace /data /tmp /home 2>/dev/null | head -c 2000000"},
		Stdout: &look, Stderr: io.Discard})
	if !strings.Contains(look.String(), "ANTHROPIC_API_KEY=") {
		t.Fatalf("the search did not run:\n%.500s", look.String())
	}
	all := got + look.String()
	audit, _ := os.ReadFile(cfg.AuditLogPath())
	for name, secret := range map[string]string{
		"Google client secret": drive.ClientSecret, "Google refresh token": drive.RefreshToken,
		"Google access token": drive.AccessToken, "Notion token": nt.Token, "Slack bot token": slackBot, "Slack app token": slackApp,
	} {
		if strings.Contains(all, secret) {
			t.Errorf("the %s is visible inside the sandbox", name)
		}
		if bytes.Contains(audit, []byte(secret)) {
			t.Errorf("the %s is in the audit log", name)
		}
	}
}

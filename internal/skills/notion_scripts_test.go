package skills

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/notion"
	"github.com/mlagent/mlagent/internal/notion/notiontest"
	"github.com/mlagent/mlagent/internal/store"
)

// The notion skill's scripts publish a report and read pages and
// databases through the real gateway route and a strict fake Notion, with
// only the sandbox token in their environment.
func TestNotionScripts(t *testing.T) {
	py := skillPython(t, "json, urllib.request")
	dir := copyScripts(t, "notion")
	f := notiontest.New(t)
	reports := f.AddPage("Reports", "")
	db := f.AddDatabase("Tasks", map[string]any{"id": "row1", "properties": map[string]any{
		"Name":   map[string]any{"type": "title", "title": []any{map[string]any{"plain_text": "Label the eval set"}}},
		"Labels": map[string]any{"type": "multi_select", "multi_select": []any{map[string]any{"name": "cat"}, map[string]any{"name": "dog"}}},
		"N":      map[string]any{"type": "number", "number": 120},
	}})

	ctx := context.Background()
	sdb, err := store.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var logs strings.Builder
	g, err := gateway.New(ctx, gateway.Config{Upstream: "http://127.0.0.1:1", DB: sdb, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Services: []gateway.Service{notion.Service(f.Token, f.URL, notion.NewPolicy([]string{reports}))}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.DataHandler())
	defer func() { srv.Close(); g.Close() }()
	tok, err := g.Issue(ctx, gateway.TokenRequest{Sandbox: "s1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"ANTHROPIC_BASE_URL=" + srv.URL, "ANTHROPIC_API_KEY=" + tok.Token}

	writePNG(t, filepath.Join(dir, "loss.png"), 8, 8)
	writePNG(t, filepath.Join(dir, "cm.png"), 8, 8)
	var notes []string
	for i := range 120 {
		notes = append(notes, fmt.Sprintf("note %d", i))
	}
	report := map[string]any{
		"title":     "EuroSAT 13-band: 98.72% test accuracy",
		"summary":   "Swin-tiny adapted to 13 bands.",
		"config":    map[string]any{"model": "swin-tiny", "epochs": 15, "lr": 5e-5},
		"metrics":   map[string]any{"columns": []string{"Metric", "Validation", "Test"}, "rows": [][]any{{"Accuracy", "98.50%", "98.72%"}}},
		"per_class": map[string]any{"columns": []string{"Class", "Accuracy"}, "rows": [][]any{{"Forest", "99.6%"}, {"River", "97.1%"}}},
		"plots":     []any{map[string]any{"path": "loss.png", "caption": "Loss"}, "cm.png"},
		"links":     []any{map[string]any{"title": "Checkpoint", "url": "https://huggingface.co/u/m"}},
		"notes":     notes,
	}
	b, _ := json.Marshal(report)
	os.WriteFile(filepath.Join(dir, "report.json"), b, 0o644)

	last, code, stderr := runPython(t, py, dir, env, "notion_report.py", "--parent", "https://www.notion.so/Reports-"+strings.ReplaceAll(reports, "-", ""), "report.json")
	if code != 0 {
		t.Fatalf("notion_report: exit %d\n%s", code, stderr)
	}
	var res struct {
		PageID string `json:"page_id"`
		Blocks int    `json:"blocks"`
		Plots  int    `json:"plots"`
	}
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		t.Fatal(err)
	}
	page := f.Page(res.PageID)
	if page == nil || page.Title != report["title"] || len(page.Blocks) != res.Blocks || res.Blocks <= 100 || res.Plots != 2 {
		t.Fatalf("published %+v; fake has %+v", res, page)
	}
	types := map[string]int{}
	for _, bl := range page.Blocks {
		types[bl["type"].(string)]++
	}
	if types["table"] != 3 || types["image"] != 2 || types["callout"] != 1 || types["bulleted_list_item"] != 121 {
		t.Errorf("block types %v; want 3 tables, 2 images, a callout, 121 list items", types)
	}

	// Big tables: Notion takes at most 100 rows in a table block and 1000
	// block elements in a request. One table of 950 classes was refused.
	var classes [][]any
	for i := range 950 {
		classes = append(classes, []any{fmt.Sprintf("class %d", i), "90%"})
	}
	params := map[string]any{}
	for i := range 150 {
		params[fmt.Sprintf("p%03d", i)] = i
	}
	big := map[string]any{"title": "ImageNet-ish", "per_class": map[string]any{"columns": []string{"Class", "Accuracy"}, "rows": classes},
		"config": params, "notes": notes}
	b, _ = json.Marshal(big)
	os.WriteFile(filepath.Join(dir, "big.json"), b, 0o644)
	last, code, stderr = runPython(t, py, dir, env, "notion_report.py", "--parent", reports, "big.json")
	if code != 0 {
		t.Fatalf("notion_report of 950 classes: exit %d\n%s", code, stderr)
	}
	var bigRes struct {
		PageID string `json:"page_id"`
	}
	if err := json.Unmarshal([]byte(last), &bigRes); err != nil {
		t.Fatal(err)
	}
	rowsIn := map[string]int{}
	for _, bl := range f.Page(bigRes.PageID).Blocks {
		if bl["type"] != "table" {
			continue
		}
		for _, row := range f.Page(strings.ReplaceAll(bl["id"].(string), "-", "")).Blocks[1:] {
			cells := row["table_row"].(map[string]any)["cells"].([]any)
			first := cells[0].([]any)[0].(map[string]any)["text"].(map[string]any)["content"].(string)
			rowsIn[first[:1]]++
		}
	}
	if rowsIn["c"] != 950 || rowsIn["p"] != 150 {
		t.Errorf("tables hold %d class rows and %d config rows; want 950 and 150", rowsIn["c"], rowsIn["p"])
	}

	// A parent the user did not choose: refused by the gateway, said clearly.
	other := f.AddPage("Elsewhere", "")
	_, code, stderr = runPython(t, py, dir, env, "notion_report.py", "--parent", other, "report.json")
	if code != 1 || !strings.Contains(stderr, "403") || !strings.Contains(stderr, "approval") {
		t.Errorf("unchosen parent: exit %d, stderr %q; want 1 and the gateway's 403", code, stderr)
	}

	// Reading: the published page as Markdown, the database as rows.
	cmdOut := func(args ...string) string {
		t.Helper()
		out, code, stderr := runPythonAll(t, py, dir, env, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, stderr)
		}
		return out
	}
	md := cmdOut("notion_read.py", "page", res.PageID)
	for _, want := range []string{"# EuroSAT 13-band: 98.72% test accuracy", "## Final metrics", "- note 119"} {
		if !strings.Contains(md, want) {
			t.Errorf("page markdown lacks %q:\n%.600s", want, md)
		}
	}
	rows := cmdOut("notion_read.py", "database", db)
	var row map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(rows)), &row); err != nil || row["Name"] != "Label the eval set" || row["N"] != 120.0 ||
		fmt.Sprint(row["Labels"]) != "[cat dog]" {
		t.Errorf("database rows %q (%v); want plain values", rows, err)
	}
	if strings.Contains(logs.String(), f.Token) {
		t.Error("the Notion token is in the gateway log")
	}
}

// runPythonAll is runPython returning all of stdout.
func runPythonAll(t *testing.T, py, dir string, env []string, args ...string) (string, int, string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	wrapped := append([]string{"-c", "import runpy, sys; sys.argv = sys.argv[1:]; sys.stdout = open(" + fmt.Sprintf("%q", dst) + ", 'w'); runpy.run_path(sys.argv[0], run_name='__main__')"}, args...)
	_, code, stderr := runPython(t, py, dir, env, wrapped...)
	b, _ := os.ReadFile(dst)
	return string(b), code, stderr
}

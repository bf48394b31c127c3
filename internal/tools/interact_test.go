package tools

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/protocol"
)

func TestTodo(t *testing.T) {
	var seen [][]protocol.TodoItem
	tool := &TodoTool{OnChange: func(items []protocol.TodoItem) { seen = append(seen, items) }}
	items := []protocol.TodoItem{{Content: "pick model", Status: "completed"}, {Content: "train", Status: "in_progress"}}
	r := runJSON(t, tool, map[string]any{"items": items})
	if r.IsError || r.Output != "plan updated: 2 items, 1 completed" {
		t.Errorf("got %q", r.Output)
	}
	if !reflect.DeepEqual(tool.Items(), items) || len(seen) != 1 {
		t.Errorf("got items %v, %d notifications; want %v, 1", tool.Items(), len(seen), items)
	}
	for _, bad := range []map[string]any{
		{"items": []map[string]any{{"content": "x", "status": "done"}}},
		{"items": []map[string]any{{"content": " ", "status": "pending"}}},
		{},
	} {
		if r := runJSON(t, tool, bad); !r.IsError {
			t.Errorf("input %v: got %q; want error", bad, r.Output)
		}
	}
	if len(seen) != 1 {
		t.Errorf("bad input notified the user: %d notifications", len(seen))
	}
}

type fakeAsker struct {
	gotID, gotQ string
	gotChoices  []string
	answer      string
	err         error
}

func (f *fakeAsker) Ask(ctx context.Context, id, q string, choices []string) (string, error) {
	f.gotID, f.gotQ, f.gotChoices = id, q, choices
	return f.answer, f.err
}

func TestAskUser(t *testing.T) {
	a := &fakeAsker{answer: "imdb"}
	tool := &AskUserTool{Asker: a}
	ctx := WithToolUseID(context.Background(), "toolu_9")
	r := tool.Run(ctx, []byte(`{"question":"Which dataset?","choices":["imdb","sst2"]}`))
	if r.IsError || r.Output != "The user answered: imdb" {
		t.Errorf("got %q", r.Output)
	}
	if a.gotID != "toolu_9" || a.gotQ != "Which dataset?" || len(a.gotChoices) != 2 {
		t.Errorf("asker got id=%q q=%q choices=%v", a.gotID, a.gotQ, a.gotChoices)
	}
	a.err = errors.New("user gone")
	if r := tool.Run(ctx, []byte(`{"question":"x"}`)); !r.IsError || !strings.Contains(r.Output, "user gone") {
		t.Errorf("got %q; want error", r.Output)
	}
	if r := (&AskUserTool{}).Run(ctx, []byte(`{"question":"x"}`)); !r.IsError {
		t.Errorf("no asker: got %q; want error", r.Output)
	}
}

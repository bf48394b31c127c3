package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/mlagent/mlagent/internal/protocol"
)

// TodoTool is the "todo" tool: the agent's plan, replaced as a whole on
// each call and shown to the user through OnChange.
type TodoTool struct {
	OnChange func(items []protocol.TodoItem)

	mu    sync.Mutex
	items []protocol.TodoItem
}

type todoInput struct {
	Items []protocol.TodoItem `json:"items"`
}

func (t *TodoTool) Info() Info {
	return Info{
		Name:        "todo",
		Description: `Write your plan as a todo list, shown to the user. Each call replaces the whole list. Keep exactly one item in_progress while working; mark items completed as soon as they are done. Use it for any task with three or more steps.`,
		Schema: Schema{
			Properties: map[string]any{
				"items": map[string]any{
					"type": "array",
					"items": map[string]any{
						"type": "object",
						"properties": map[string]any{
							"content": map[string]any{"type": "string"},
							"status":  map[string]any{"type": "string", "enum": []string{"pending", "in_progress", "completed"}},
						},
						"required": []string{"content", "status"},
					},
				},
			},
			Required: []string{"items"},
		},
	}
}

func (t *TodoTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in todoInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if in.Items == nil {
		return Errorf("items is required (an empty list clears the plan)")
	}
	done := 0
	for i, it := range in.Items {
		if strings.TrimSpace(it.Content) == "" {
			return Errorf("item %d has no content", i+1)
		}
		switch it.Status {
		case "pending", "in_progress":
		case "completed":
			done++
		default:
			return Errorf("item %d: status must be pending, in_progress or completed; got %q", i+1, it.Status)
		}
	}
	t.mu.Lock()
	t.items = append([]protocol.TodoItem(nil), in.Items...)
	t.mu.Unlock()
	if t.OnChange != nil {
		t.OnChange(in.Items)
	}
	return Result{Output: fmt.Sprintf("plan updated: %d items, %d completed", len(in.Items), done), Summary: fmt.Sprintf("%d/%d done", done, len(in.Items))}
}

// Items returns the current plan.
func (t *TodoTool) Items() []protocol.TodoItem {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]protocol.TodoItem(nil), t.items...)
}

// Asker delivers a question to the user and waits for the answer. id is the
// tool_use id, so the answer can be matched to the question. It must return
// when ctx ends.
type Asker interface {
	Ask(ctx context.Context, id, question string, choices []string) (string, error)
}

// AskUserTool is the "ask_user" tool.
type AskUserTool struct{ Asker Asker }

type askInput struct {
	Question string   `json:"question"`
	Choices  []string `json:"choices,omitempty"`
}

// ToolUseIDKey is the context key under which the agent passes the
// tool_use id of the call being run.
type toolUseIDKey struct{}

// WithToolUseID returns ctx carrying the id of the tool call.
func WithToolUseID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, toolUseIDKey{}, id)
}

// ToolUseID returns the id set by WithToolUseID.
func ToolUseID(ctx context.Context) string {
	id, _ := ctx.Value(toolUseIDKey{}).(string)
	return id
}

func (t *AskUserTool) Info() Info {
	return Info{
		Name:        "ask_user",
		Description: `Ask the user a question and wait for the answer. Give choices when there are a few sensible options (the user may still answer freely). Ask one thing at a time; use it before writing code to confirm the dataset, the model and the Hugging Face username, and whenever a decision is the user's to make.`,
		Schema: Schema{
			Properties: map[string]any{
				"question": map[string]any{"type": "string"},
				"choices":  map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			},
			Required: []string{"question"},
		},
	}
}

func (t *AskUserTool) Summarize(input json.RawMessage) string {
	var in askInput
	if Decode(input, &in) != nil {
		return ""
	}
	return oneLine(in.Question, 120)
}

func (t *AskUserTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in askInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if strings.TrimSpace(in.Question) == "" {
		return Errorf("question is required")
	}
	if t.Asker == nil {
		return Errorf("no user is attached to answer questions; proceed with your best judgement and say what you assumed")
	}
	ans, err := t.Asker.Ask(ctx, ToolUseID(ctx), in.Question, in.Choices)
	if err != nil {
		return Errorf("no answer: %v", err)
	}
	return Result{Output: "The user answered: " + ans, Summary: oneLine(ans, 80)}
}

package tools

import (
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/skills"
)

func TestSkillTool(t *testing.T) {
	set, _ := skills.Load("../skills/testdata/user")
	tool := &SkillTool{Skills: set}
	tests := []struct {
		name  string
		in    map[string]any
		want  string
		isErr bool
	}{
		{"list", map[string]any{}, "- good: A test skill that helps with testing.\n", false},
		{"load", map[string]any{"name": "good"}, "# Skill: good\n\n# Good\n\nRun scripts/hello.py.\n\n\nFiles of this skill", false},
		{"file", map[string]any{"name": "good", "file": "scripts/hello.py"}, "print(\"hello\")", false},
		{"escape", map[string]any{"name": "good", "file": "../trackio/SKILL.md"}, "must stay inside the skill folder", true},
		{"unknown", map[string]any{"name": "nope"}, "no skill \"nope\"", true},
		{"file without name", map[string]any{"file": "x"}, "needs a skill name", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runJSON(t, tool, tt.in)
			if r.IsError != tt.isErr || !strings.Contains(r.Output, tt.want) {
				t.Errorf("got %q (error %v); want %q (error %v)", r.Output, r.IsError, tt.want, tt.isErr)
			}
		})
	}
}

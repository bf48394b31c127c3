package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mlagent/mlagent/internal/skills"
)

// SkillTool is the "skill" tool: list skills, load one's instructions, or
// read one of its files. Names and descriptions are also in the system
// prompt; bodies are loaded only when needed.
type SkillTool struct{ Skills *skills.Set }

type skillInput struct {
	Name string `json:"name,omitempty"`
	File string `json:"file,omitempty"`
}

func (t *SkillTool) Info() Info {
	return Info{
		Name:        "skill",
		Description: `Use a skill: packaged know-how for a kind of task. With no name, list the skills. With name, return the skill's instructions (SKILL.md) and the list of its files; load a skill before starting a task it covers and follow it. With name and file, return that file (e.g. a reference or a script to copy into the workspace).`,
		Schema: Schema{
			Properties: map[string]any{
				"name": map[string]any{"type": "string", "description": "Skill name."},
				"file": map[string]any{"type": "string", "description": "A file of the skill, relative to its folder."},
			},
		},
		Parallel: true,
	}
}

func (t *SkillTool) Summarize(input json.RawMessage) string {
	var in skillInput
	if Decode(input, &in) != nil {
		return ""
	}
	if in.Name == "" {
		return "list"
	}
	return strings.TrimSpace(in.Name + " " + in.File)
}

func (t *SkillTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in skillInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if t.Skills == nil || len(t.Skills.All()) == 0 {
		return Result{Output: "no skills are installed", Summary: "0 skills"}
	}
	if in.Name == "" {
		if in.File != "" {
			return Errorf("file needs a skill name")
		}
		var b strings.Builder
		for _, s := range t.Skills.All() {
			fmt.Fprintf(&b, "- %s: %s\n", s.Name, s.Description)
		}
		return Result{Output: b.String(), Summary: fmt.Sprintf("%d skills", len(t.Skills.All()))}
	}
	s, ok := t.Skills.Get(in.Name)
	if !ok {
		var names []string
		for _, s := range t.Skills.All() {
			names = append(names, s.Name)
		}
		return Errorf("no skill %q; available: %s", in.Name, strings.Join(names, ", "))
	}
	if in.File != "" {
		b, err := s.ReadFile(in.File)
		if err != nil {
			return Errorf("%v", err)
		}
		if isBinary(b[:min(len(b), 8192)]) {
			return Errorf("%s is binary", in.File)
		}
		return Result{Output: HeadTail(string(b), 100000), Summary: fmt.Sprintf("%s/%s", s.Name, in.File)}
	}
	files, err := s.Files()
	if err != nil {
		return Errorf("%v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Skill: %s\n\n%s", s.Name, s.Body())
	if len(files) > 0 {
		fmt.Fprintf(&b, "\n\nFiles of this skill (read one with the skill tool, name=%q, file=<path>):\n", s.Name)
		for _, f := range files {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return Result{Output: b.String(), Summary: "loaded " + s.Name}
}

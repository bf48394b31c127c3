package tools

import (
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/skills"
)

// Env is what the agent's tools need from the sandbox and the session
// they serve.
type Env struct {
	// Workdir is where file paths resolve and the shell starts.
	Workdir string
	// StateDir keeps the shell's state and background jobs' logs.
	StateDir string
	// Skills are the skills the skill tool serves (nil: none).
	Skills *skills.Set
	// Asker carries ask_user questions to the person.
	Asker Asker
	// Approver, when set, asks the person before each command runs (the
	// ask-all permission mode); nil runs commands without asking.
	Approver Approver
	// OnTodo shows the plan when the todo tool changes it.
	OnTodo func([]protocol.TodoItem)
	// OnJob is told when a background job starts and ends.
	OnJob func(protocol.Job)
	// HFEndpoint and HFToken reach the Hugging Face Hub (through the
	// gateway inside a sandbox).
	HFEndpoint, HFToken string
}

// Default returns the agent's tool set: the one list of tools, so adding a
// tool touches this package alone. The shell's background jobs end when
// the returned Shell is closed.
func Default(e Env) (*Registry, *Shell, error) {
	shell, err := NewShell(e.Workdir, e.StateDir)
	if err != nil {
		return nil, nil, err
	}
	if e.OnJob != nil {
		shell.OnJob = func(j *Job) { e.OnJob(protocol.Job{ID: j.ID, Command: j.Command, Status: j.Status()}) }
	}
	files := &Files{Dir: e.Workdir}
	return NewRegistry(
		&BashTool{Shell: shell, Approver: e.Approver},
		&JobsTool{Shell: shell},
		&ReadTool{Files: files},
		&WriteTool{Files: files},
		&EditTool{Files: files},
		&GlobTool{Files: files},
		&GrepTool{Files: files},
		&TodoTool{OnChange: e.OnTodo},
		&AskUserTool{Asker: e.Asker},
		&HFSearchTool{Endpoint: e.HFEndpoint, Token: e.HFToken},
		&SkillTool{Skills: e.Skills},
		&ShareFileTool{Dir: e.Workdir},
	), shell, nil
}

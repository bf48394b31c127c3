package demo

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/mlagent/mlagent/internal/skills"
)

// The Python the demo's scripted agent writes into the sandbox and runs
// there. Each script documents its arguments and outputs at its top; the
// Go side only copies them, so what runs is exactly what is reviewed here.
//
//go:embed python/*.py
var pythonFS embed.FS

// Script names, in the order the demo runs them. train.py imports swin13.py
// and trackio_lite.py; infer.py imports train.py.
const (
	ScriptSynth       = "eurosat_synth.py" // synthetic 13-band EuroSAT-like data
	ScriptSwin13      = "swin13.py"        // channel expansion + its numerical check
	ScriptTrackioLite = "trackio_lite.py"  // Trackio's SQLite logging without the package
	ScriptTrain       = "train.py"         // training, checkpoint, metrics.json
	ScriptInfer       = "infer.py"         // test-set CSV and inference.json
)

// fromSkills are the scripts the demo takes from the bundled skills, so
// the demo runs exactly the helpers a real session would load: the
// channel expansion of the transformers skill and the Trackio writer of
// the trackio skill.
var fromSkills = map[string]string{
	ScriptSwin13:      "transformers/scripts/channel_expansion.py",
	ScriptTrackioLite: "trackio/scripts/trackio_lite.py",
}

// Script returns the content of the script name (a base name such as
// "train.py"), or "" when there is no such script.
func Script(name string) string {
	if p, ok := fromSkills[name]; ok {
		b, err := fs.ReadFile(skills.Bundled(), p)
		if err != nil {
			return ""
		}
		return string(b)
	}
	b, err := pythonFS.ReadFile("python/" + name)
	if err != nil {
		return ""
	}
	return string(b)
}

// Scripts lists the script names, sorted.
func Scripts() []string {
	entries, err := fs.ReadDir(pythonFS, "python")
	if err != nil {
		// The directory is embedded at build time; it cannot be missing.
		panic(fmt.Sprintf("demo: embedded python scripts: %v", err))
	}
	names := make([]string, 0, len(entries)+len(fromSkills))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	for name := range fromSkills {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// WriteScripts writes every embedded script into dir (created if needed),
// so they can import each other as they do in the sandbox's /workspace.
func WriteScripts(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write demo scripts: %w", err)
	}
	for _, name := range Scripts() {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(Script(name)), 0o644); err != nil {
			return fmt.Errorf("write demo script %s: %w", name, err)
		}
	}
	return nil
}

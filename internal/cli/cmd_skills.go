package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/skills"
	"github.com/mlagent/mlagent/internal/volume"
)

func init() {
	register(&Command{
		Name:    "skills",
		Summary: "list the agent's skills, bundled and your own (ls, show)",
		Run:     runSkills,
	})
}

const skillsHelp = `Skills are folders with a SKILL.md (YAML front matter: name, description) that
the agent loads when a task matches. Bundled skills ship in the binary; your own
live in the data volume's skills folder, which the agent sees at /data/skills
(on the host: $MLAGENT_HOME/volumes/data/skills, or --skills-dir), and replace a
bundled skill of the same name. Add one with:
  mlagent volume put data ./my-skill skills/my-skill

  mlagent skills ls          list skills: name, source, description
  mlagent skills show NAME   print a skill's SKILL.md body and files`

func runSkills(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "skills", "skills ls|show [--skills-dir DIR]", skillsHelp)
	dir := fs.String("skills-dir", filepath.Join(env.Config.VolumesDir(), volume.Data, sandbox.SkillsSubdir), "folder of user skills")
	// Flags may come before or after the subcommand and its argument.
	var rest []string
	for {
		if code := parseFlags(fs, args, env); code >= 0 {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rest) == 0 {
		rest = []string{"ls"}
	}
	set, errs := skills.Load(*dir)
	// Everything below comes from the data volume, which sandboxes write:
	// sanitized for the terminal.
	for _, e := range errs {
		fmt.Fprintf(env.Stderr, "warning: %s\n", sanitize.Text(e.Error()))
	}
	switch rest[0] {
	case "ls", "list":
		if len(set.All()) == 0 {
			fmt.Fprintln(env.Stdout, "no skills")
			return ExitOK
		}
		for _, s := range set.All() {
			fmt.Fprintf(env.Stdout, "%-20s %-8s %s\n", sanitize.Line(s.Name, 40), s.Source, sanitize.Line(s.Description, 100))
		}
	case "show":
		if len(rest) != 2 {
			fmt.Fprintln(env.Stderr, "usage: mlagent skills show NAME")
			return ExitUsage
		}
		s, ok := set.Get(rest[1])
		if !ok {
			fmt.Fprintf(env.Stderr, "mlagent skills: no skill %q\n", sanitize.Text(rest[1]))
			return ExitFailure
		}
		fmt.Fprintf(env.Stdout, "%s (%s, %s)\n%s\n\n%s", sanitize.Line(s.Name, 0), s.Source, sanitize.Line(s.Location, 0),
			sanitize.Text(s.Description), sanitize.Text(s.Body()))
		files, err := s.Files()
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent skills: %s\n", sanitize.Text(err.Error()))
			return ExitFailure
		}
		if len(files) > 0 {
			for i, f := range files {
				files[i] = sanitize.Line(f, 0)
			}
			fmt.Fprintf(env.Stdout, "\nFiles:\n  %s\n", strings.Join(files, "\n  "))
		}
	default:
		fmt.Fprintf(env.Stderr, "mlagent skills: unknown subcommand %q (want ls or show)\n", rest[0])
		return ExitUsage
	}
	return ExitOK
}

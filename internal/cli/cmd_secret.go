package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/mlagent/mlagent/internal/secrets"
)

func init() {
	register(&Command{
		Name:    "secret",
		Summary: "store credentials outside every sandbox (set, ls, rm)",
		Run:     runSecret,
	})
}

const secretHelp = `Secrets are kept in $MLAGENT_HOME/secrets.json (mode 0600; a looser file is
refused). Only the gateway and the syncer read them; sandboxes never see them.

  mlagent secret set NAME KEY=VALUE...   create or replace a secret
                                         (KEY=@FILE reads the value from FILE, KEY=@- from
                                         stdin: all of it, or a line each for several keys)
  mlagent secret set NAME KEY            asks for the value without echoing it (or reads
                                         it from stdin when that is not a terminal), so it
                                         stays out of the shell's history
  mlagent secret ls                      list names and keys (never values)
  mlagent secret rm NAME                 delete a secret

Keys mlagent uses: ANTHROPIC_API_KEY (model key; an exported one wins),
HF_TOKEN (Hugging Face, injected by the gateway and used by the syncer),
GITHUB_TOKEN (git over HTTPS to github.com, injected by the gateway),
MLAGENT_ADMIN_TOKEN (gateway admin plane; an exported one wins),
GOOGLE_CREDENTIALS (Google Drive: a service-account key or authorized-user JSON),
NOTION_TOKEN (Notion integration secret), SLACK_BOT_TOKEN and SLACK_APP_TOKEN
(mlagent slack).

Example:
  mlagent secret set anthropic ANTHROPIC_API_KEY        (asks for the key)
  mlagent secret set anthropic ANTHROPIC_API_KEY=sk-ant-...
  mlagent secret set huggingface HF_TOKEN=hf_...
  mlagent secret set google GOOGLE_CREDENTIALS=@service-account.json`

func runSecret(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "secret", "secret set|ls|rm ...", secretHelp)
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	args = fs.Args()
	if len(args) == 0 {
		fs.Usage()
		return ExitUsage
	}
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") && !strings.Contains(a, "=") && a != "-" {
			fmt.Fprintf(env.Stderr, "mlagent secret %s: unknown flag %s; see mlagent secret --help\n", args[0], sanitizeFlag(a))
			return ExitUsage
		}
	}
	st := secrets.Open(env.Config.SecretsPath())
	switch args[0] {
	case "set":
		if len(args) < 3 {
			fmt.Fprintln(env.Stderr, "usage: mlagent secret set NAME KEY=VALUE...")
			return ExitUsage
		}
		kv := map[string]string{}
		stdin := &stdinValues{env: env, name: args[1]}
		for _, a := range args[2:] {
			if _, v, ok := strings.Cut(a, "="); ok && v == "@-" {
				stdin.keys++
			}
		}
		for _, a := range args[2:] {
			k, v, ok := strings.Cut(a, "=")
			switch {
			case strings.HasPrefix(a, "-"):
				fmt.Fprintf(env.Stderr, "mlagent secret set: unknown flag %s; see mlagent secret --help\n", sanitizeFlag(a))
				return ExitUsage
			case !ok && bareKey(a):
				val, err := askSecret(env, args[1], a)
				if err != nil {
					fmt.Fprintf(env.Stderr, "mlagent secret set: %s: %v\n", a, err)
					return ExitFailure
				}
				kv[a] = val
				continue
			case !ok:
				// Do not echo a: it may be a bare secret value.
				fmt.Fprintln(env.Stderr, "mlagent secret set: each argument must be KEY=VALUE, or a KEY in capitals to be asked for its value")
				return ExitUsage
			}
			if name, ok := strings.CutPrefix(v, "@"); ok && name != "" {
				// KEY=@FILE keeps long values (a JSON key file) out of argv
				// and shell history.
				var err error
				if name == "-" {
					v, err = stdin.next(k)
				} else {
					var b []byte
					b, err = readSecretFile(name, env)
					v = strings.TrimRight(string(b), "\r\n")
				}
				if err == nil && v == "" {
					err = fmt.Errorf("%s is empty", name)
				}
				if err != nil {
					fmt.Fprintf(env.Stderr, "mlagent secret set: %s: %v\n", k, err)
					return ExitFailure
				}
			}
			kv[k] = v
		}
		if err := st.Set(args[1], kv); err != nil {
			fmt.Fprintf(env.Stderr, "mlagent secret set: %v\n", err)
			return ExitFailure
		}
		fmt.Fprintf(env.Stdout, "saved secret %s (%d key(s)) in %s\n", args[1], len(kv), st.Path())
	case "ls", "list":
		entries, err := st.List()
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent secret ls: %v\n", err)
			return ExitFailure
		}
		if len(entries) == 0 {
			fmt.Fprintln(env.Stdout, "no secrets; add one with: mlagent secret set NAME KEY=VALUE")
		}
		for _, e := range entries {
			fmt.Fprintf(env.Stdout, "%-20s %s\n", e.Name, strings.Join(e.Keys, ", "))
		}
	case "rm", "remove", "delete":
		if len(args) != 2 {
			fmt.Fprintln(env.Stderr, "usage: mlagent secret rm NAME")
			return ExitUsage
		}
		if err := st.Remove(args[1]); err != nil {
			fmt.Fprintf(env.Stderr, "mlagent secret rm: %v\n", err)
			return ExitFailure
		}
		fmt.Fprintf(env.Stdout, "removed secret %s\n", args[1])
	default:
		fmt.Fprintf(env.Stderr, "mlagent secret: unknown subcommand %q (want set, ls or rm)\n", args[0])
		return ExitUsage
	}
	return ExitOK
}

// readSecretFile reads a secret value from a file ("-" is stdin), at most
// 1 MiB. Errors name the file, never its contents.
func readSecretFile(name string, env *Env) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = env.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("%s is larger than 1 MiB", name)
	}
	return b, nil
}

// stdinValues reads the values of KEY=@- arguments. On a terminal each is
// asked for without echo. Piped, a single one takes the whole of stdin (a
// JSON key file), and several take a line each, in order: `secret set
// slack SLACK_BOT_TOKEN=@- SLACK_APP_TOKEN=@-` with two lines.
type stdinValues struct {
	env   *Env
	name  string
	keys  int // how many KEY=@- there are
	lines *bufio.Reader
}

func (s *stdinValues) next(key string) (string, error) {
	if f, ok := s.env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return askSecret(s.env, s.name, key)
	}
	if s.keys <= 1 {
		b, err := readSecretFile("-", s.env)
		return strings.TrimRight(string(b), "\r\n"), err
	}
	if s.lines == nil {
		s.lines = bufio.NewReader(io.LimitReader(s.env.Stdin, 1<<20))
	}
	line, err := s.lines.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("stdin is empty here: give one line for each of the %d KEY=@-", s.keys)
	}
	return line, nil
}

// bareKey is a KEY given without a value: an environment-style name in
// capitals, so that a secret pasted by mistake (hf_…, sk-ant-…) is never
// taken for a key's name and listed by secret ls.
func bareKey(s string) bool {
	if s == "" || len(s) > 128 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// askSecret reads a value without echoing it on a terminal, or from
// stdin (its first line) when that is not one.
func askSecret(env *Env, name, key string) (string, error) {
	if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		// Echo goes off before the prompt shows: a value typed or pasted
		// the moment the prompt appears would otherwise be echoed before
		// ReadPassword turns echo off.
		if old, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
			quiet := *old
			quiet.Lflag &^= unix.ECHO
			if unix.IoctlSetTermios(fd, unix.TCSETS, &quiet) == nil {
				defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
			}
		}
		fmt.Fprintf(env.Stderr, "%s for secret %s (not shown): ", key, name)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", err
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", errors.New("no value given")
		}
		return v, nil
	}
	b, err := readSecretFile("-", env)
	if err != nil {
		return "", err
	}
	v, _, _ := strings.Cut(string(b), "\n")
	if v = strings.TrimSpace(v); v == "" {
		return "", errors.New("no value on stdin")
	}
	return v, nil
}

// sanitizeFlag shows a flag-like argument without what follows an "="
// (a value) and cut short.
func sanitizeFlag(a string) string {
	a, _, _ = strings.Cut(a, "=")
	if len(a) > 30 {
		a = a[:30] + "…"
	}
	return a
}

// Package secrets keeps the user's credentials (model key, Hugging Face
// token, GitHub token, gateway admin token) in one file readable by its
// owner only. Values leave this package only towards the gateway and the
// syncer, never towards a sandbox.
package secrets

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
)

// Well-known keys.
const (
	AnthropicKey = "ANTHROPIC_API_KEY"
	HFToken      = "HF_TOKEN"
	GitHubToken  = "GITHUB_TOKEN"
	AdminToken   = "MLAGENT_ADMIN_TOKEN"
	// GoogleCredentials is a Google service-account key or authorized-user
	// file (JSON), for Drive.
	GoogleCredentials = "GOOGLE_CREDENTIALS"
	// NotionToken is a Notion integration's secret.
	NotionToken = "NOTION_TOKEN"
	// SlackBotToken (xoxb-) and SlackAppToken (xapp-, Socket Mode) run
	// `mlagent slack`.
	SlackBotToken = "SLACK_BOT_TOKEN"
	SlackAppToken = "SLACK_APP_TOKEN"
)

// ErrLoosePermissions is returned when the file is readable by others.
var ErrLoosePermissions = errors.New("secret store is readable by group or others")

// Compiled on first use: bounded repeats make big programs, and every
// sandbox's PID 1 (the same binary) would pay for them at start.
var namePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`) })
var keyPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`) })

// Store is a secrets file: named secrets, each a set of KEY=VALUE pairs.
// It is safe for concurrent use within one process.
type Store struct {
	path string
	mu   sync.Mutex
}

// Open returns the store kept at path; the file need not exist yet.
func Open(path string) *Store { return &Store{path: path} }

// Path is the file behind the store.
func (s *Store) Path() string { return s.path }

type fileFormat struct {
	Secrets map[string]map[string]string `json:"secrets"`
}

func (s *Store) load() (map[string]map[string]string, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open secret store: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat secret store: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: %w; run: chmod 600 %s",
			s.path, st.Mode().Perm(), ErrLoosePermissions, s.path)
	}
	var ff fileFormat
	if err := json.NewDecoder(f).Decode(&ff); err != nil {
		// Never echo the file's contents: they are secrets.
		return nil, fmt.Errorf("secret store %s is not valid JSON; fix or remove it", s.path)
	}
	if ff.Secrets == nil {
		ff.Secrets = map[string]map[string]string{}
	}
	return ff.Secrets, nil
}

func (s *Store) save(m map[string]map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("create secret store dir: %w", err)
	}
	b, err := json.MarshalIndent(fileFormat{Secrets: m}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".secrets-*")
	if err != nil {
		return fmt.Errorf("write secret store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write secret store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.path)
}

// Set stores (or replaces) the named secret with the given pairs.
func (s *Store) Set(name string, kv map[string]string) error {
	if !namePattern().MatchString(name) {
		return fmt.Errorf("secret name %q: use letters, digits, '.', '_' or '-'", name)
	}
	if len(kv) == 0 {
		return errors.New("a secret needs at least one KEY=VALUE")
	}
	for k, v := range kv {
		if !keyPattern().MatchString(k) {
			return fmt.Errorf("key %q: use an environment-variable name", k)
		}
		if v == "" {
			return fmt.Errorf("key %s has an empty value", k)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return err
	}
	m[name] = kv
	return s.save(m)
}

// Remove deletes the named secret; removing a missing one is an error.
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return err
	}
	if _, ok := m[name]; !ok {
		return fmt.Errorf("no secret named %q", name)
	}
	delete(m, name)
	return s.save(m)
}

// Entry describes one secret without its values.
type Entry struct {
	Name string
	Keys []string
}

// List returns every secret's name and keys, sorted, never values.
func (s *Store) List() ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(m))
	for name, kv := range m {
		e := Entry{Name: name}
		for k := range kv {
			e.Keys = append(e.Keys, k)
		}
		sort.Strings(e.Keys)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Lookup finds key in any secret (the secret whose name sorts first wins
// on a tie). ok is false when no secret holds it.
func (s *Store) Lookup(key string) (value string, ok bool, err error) {
	v, _, ok, err := s.lookupNamed(key)
	return v, ok, err
}

// lookupNamed is Lookup that also says which secret holds the key.
func (s *Store) lookupNamed(key string) (value, name string, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return "", "", false, err
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if v, ok := m[n][key]; ok {
			return v, n, true, nil
		}
	}
	return "", "", false, nil
}

// Resolve reads a key from the environment, else from the store: an
// exported variable wins, as with the Anthropic SDK and Claude Code.
func (s *Store) Resolve(key string, getenv func(string) string) (string, error) {
	r, err := s.ResolveFrom(key, getenv)
	return r.Value, err
}

// Resolved is a key's value and where it came from.
type Resolved struct {
	Value string
	// Source is "$KEY" or `secret "name"`; "" when the key is set nowhere.
	Source string
	// Shadowed is the store's secret that the environment overrides with
	// a different value ("" when there is none, or the same value).
	Shadowed string
}

// ResolveFrom is Resolve saying where the value came from, and whether
// the environment hides a different stored one.
func (s *Store) ResolveFrom(key string, getenv func(string) string) (Resolved, error) {
	stored, name, ok, err := s.lookupNamed(key)
	if env := getenv(key); env != "" {
		r := Resolved{Value: env, Source: "$" + key}
		if err == nil && ok && stored != env {
			r.Shadowed = fmt.Sprintf("secret %q", name)
		}
		return r, nil
	}
	if err != nil {
		return Resolved{}, err
	}
	if !ok {
		return Resolved{}, nil
	}
	return Resolved{Value: stored, Source: fmt.Sprintf("secret %q", name)}, nil
}

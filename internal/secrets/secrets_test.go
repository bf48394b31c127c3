package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetListLookupRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	s := Open(path)
	if err := s.Set("anthropic", map[string]string{AnthropicKey: "sk-ant-secret"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("hf", map[string]string{HFToken: "hf_secret"}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %04o; want 0600", got)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "anthropic" || list[0].Keys[0] != AnthropicKey {
		t.Errorf("List = %+v", list)
	}
	v, ok, err := s.Lookup(HFToken)
	if err != nil || !ok || v != "hf_secret" {
		t.Errorf("Lookup = %q %v %v", v, ok, err)
	}
	if err := s.Remove("hf"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Lookup(HFToken); ok {
		t.Error("HF token still there after Remove")
	}
	if err := s.Remove("hf"); err == nil {
		t.Error("removing a missing secret succeeded")
	}
}

func TestRefusesLooseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	s := Open(path)
	if err := s.Set("a", map[string]string{"K": "topsecretvalue"}); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	_, _, err := s.Lookup("K")
	if !errors.Is(err, ErrLoosePermissions) {
		t.Fatalf("err = %v; want ErrLoosePermissions", err)
	}
	if strings.Contains(err.Error(), "topsecretvalue") {
		t.Error("error leaks the secret value")
	}
}

func TestCorruptFileErrorLeaksNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(path, []byte(`{"secrets": {"a": {"K": "leakme"`), 0o600)
	_, _, err := Open(path).Lookup("K")
	if err == nil || strings.Contains(err.Error(), "leakme") {
		t.Fatalf("err = %v; want an error that does not quote the file", err)
	}
}

// TestResolveEnvironmentWins: an exported key wins over the store (as
// with the Anthropic SDK and Claude Code), and the caller learns where
// the value came from and what it hides.
func TestResolveEnvironmentWins(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "secrets.json"))
	envVal := "from-env"
	env := func(k string) string {
		if k == AnthropicKey {
			return envVal
		}
		return ""
	}
	cases := []struct {
		name, envVal, stored string
		want                 Resolved
	}{
		{"environment only", "from-env", "", Resolved{Value: "from-env", Source: "$ANTHROPIC_API_KEY"}},
		{"environment wins", "from-env", "from-store", Resolved{Value: "from-env", Source: "$ANTHROPIC_API_KEY", Shadowed: `secret "anthropic"`}},
		{"same value", "same", "same", Resolved{Value: "same", Source: "$ANTHROPIC_API_KEY"}},
		{"store only", "", "from-store", Resolved{Value: "from-store", Source: `secret "anthropic"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			envVal = c.envVal
			s.Remove("anthropic")
			if c.stored != "" {
				s.Set("anthropic", map[string]string{AnthropicKey: c.stored})
			}
			got, err := s.ResolveFrom(AnthropicKey, env)
			if err != nil || got != c.want {
				t.Errorf("ResolveFrom = %+v, %v; want %+v", got, err, c.want)
			}
			if v, _ := s.Resolve(AnthropicKey, env); v != c.want.Value {
				t.Errorf("Resolve = %q; want %q", v, c.want.Value)
			}
		})
	}
}

func TestSetRejectsBadInput(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "secrets.json"))
	for _, tc := range []struct {
		name string
		kv   map[string]string
	}{
		{"../etc", map[string]string{"K": "v"}},
		{"ok", map[string]string{}},
		{"ok", map[string]string{"bad key": "v"}},
		{"ok", map[string]string{"K": ""}},
	} {
		if err := s.Set(tc.name, tc.kv); err == nil {
			t.Errorf("Set(%q, %v) succeeded; want an error", tc.name, tc.kv)
		}
	}
}

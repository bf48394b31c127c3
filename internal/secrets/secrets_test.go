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

func TestResolveFallsBackToEnv(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "secrets.json"))
	env := func(k string) string {
		if k == AnthropicKey {
			return "from-env"
		}
		return ""
	}
	v, err := s.Resolve(AnthropicKey, env)
	if err != nil || v != "from-env" {
		t.Fatalf("Resolve = %q, %v", v, err)
	}
	s.Set("anthropic", map[string]string{AnthropicKey: "from-store"})
	if v, _ := s.Resolve(AnthropicKey, env); v != "from-store" {
		t.Errorf("Resolve = %q; want the store to win over the environment", v)
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

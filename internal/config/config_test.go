package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrecedenceFileThenEnv(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "cfg", "mlagent"), 0o700)
	os.WriteFile(filepath.Join(dir, "cfg", "mlagent", "config.toml"), []byte(`
[gateway]
listen = "127.0.0.1:9000"
upstream = "http://file"
[run]
budget_usd = 1.5
`), 0o600)
	env := map[string]string{
		"XDG_CONFIG_HOME":  filepath.Join(dir, "cfg"),
		"MLAGENT_HOME":     filepath.Join(dir, "home"),
		"MLAGENT_UPSTREAM": "http://env",
	}
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.Listen != "127.0.0.1:9000" {
		t.Errorf("listen = %q; want the file's", c.Gateway.Listen)
	}
	if c.Gateway.Upstream != "http://env" {
		t.Errorf("upstream = %q; want the environment's", c.Gateway.Upstream)
	}
	if c.Run.BudgetUSD != 1.5 {
		t.Errorf("budget = %v", c.Run.BudgetUSD)
	}
	if c.Home != filepath.Join(dir, "home") {
		t.Errorf("home = %q", c.Home)
	}
}

func TestBadFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte("[gateway\n"), 0o600)
	env := map[string]string{"MLAGENT_CONFIG": p, "MLAGENT_HOME": dir}
	if _, err := Load(func(k string) string { return env[k] }); err == nil {
		t.Fatal("malformed config loaded without error")
	}
}

func TestHomeDefaults(t *testing.T) {
	h, _ := HomeDir(func(k string) string {
		return map[string]string{"XDG_DATA_HOME": "/x"}[k]
	})
	if h != "/x/mlagent" {
		t.Errorf("home = %q", h)
	}
}

func TestSandboxImage(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	os.WriteFile(file, []byte("[sandbox]\nimage = \"python:3.12-slim\"\n"), 0o600)
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"MLAGENT_CONFIG": file}, "python:3.12-slim"},
		{map[string]string{"MLAGENT_CONFIG": file, "MLAGENT_SANDBOX_IMAGE": "./img.tar"}, "./img.tar"},
		{map[string]string{}, ""},
	} {
		c.env["MLAGENT_HOME"] = filepath.Join(dir, "home")
		c.env["XDG_CONFIG_HOME"] = filepath.Join(dir, "none")
		cfg, err := Load(func(k string) string { return c.env[k] })
		if err != nil || cfg.Sandbox.Image != c.want {
			t.Errorf("%v: got %q, %v; want %q", c.env, cfg.Sandbox.Image, err, c.want)
		}
	}
	if cfg, _ := Load(func(k string) string { return map[string]string{"MLAGENT_HOME": dir}[k] }); cfg.ImagesDir() != filepath.Join(dir, "images") {
		t.Errorf("ImagesDir: %s", cfg.ImagesDir())
	}
}

// A key no setting takes is an error naming the file, the line, and the
// setting meant; before, `listne = …` was ignored without a word.
func TestUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.toml")
	os.WriteFile(p, []byte(`# comment: listne = "not a key"
log_levle = "debug"

[gateway]
listen = "127.0.0.1:9000"
description = """
listne = "inside a string"
"""
allow = [
  "pypi.org",
]
listne = "127.0.0.1:1"

[sandboxx]
cpus = 2

[sandbox]
pids = 64
dashboard.lisen = { a = 1 }

[run]
modle = "x"
`), 0o600)
	env := map[string]string{"MLAGENT_CONFIG": p, "MLAGENT_HOME": dir}
	_, err := Load(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("a config with unknown keys loaded without error")
	}
	want := []string{
		p + `:2: unknown key "log_levle" (did you mean "log_level"?)`,
		p + `:6: unknown key "gateway.description"`,
		p + `:12: unknown key "gateway.listne" (did you mean "gateway.listen"?)`,
		p + `:14: unknown table "sandboxx" (did you mean "sandbox"?)`,
		p + `:19: unknown table "sandbox.dashboard.lisen"`,
		p + `:22: unknown key "run.modle" (did you mean "run.model"?)`,
	}
	got := strings.Split(err.Error(), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

func FuzzKeyLines(f *testing.F) {
	for _, s := range []string{"a = 1\n[b]\nc = \"\"\"\nx = 1\n\"\"\"\n", "[[t]]\nk.'q.r' = [\n1,\n]\n", "x = '''", "= ="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		for k, n := range keyLines(doc) {
			if n < 1 || n > strings.Count(doc, "\n")+1 {
				t.Fatalf("key %q on line %d of a %d-line document", k, n, strings.Count(doc, "\n")+1)
			}
		}
	})
}

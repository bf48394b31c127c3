package skills

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in       string
		wantName, body string
		wantErr        string
	}{
		{"ok", "---\nname: a-b\ndescription: Does a.\n---\n\n# A\nbody\n", "a-b", "# A\nbody\n", ""},
		{"crlf bom", "\xef\xbb\xbf---\r\nname: x\r\ndescription: y\r\n---\r\nbody", "x", "body", ""},
		{"folded description", "---\nname: x\ndescription: >\n  long\n  text\n---\n", "x", "", ""},
		{"close at eof", "---\nname: x\ndescription: y\n---", "x", "", ""},
		{"no front matter", "# just markdown\n", "", "", "must start"},
		{"unclosed", "---\nname: x\n", "", "", "not closed"},
		{"bad yaml", "---\nname: [x\n---\n", "", "", "front matter"},
		{"bad name", "---\nname: ../etc\ndescription: y\n---\n", "", "", "name"},
		{"no description", "---\nname: x\n---\n", "", "", "description is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, body, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got err %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Name != tt.wantName || body != tt.body {
				t.Errorf("got name %q body %q; want %q, %q", f.Name, body, tt.wantName, tt.body)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("---\nname: a\ndescription: b\n---\nbody"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("---\nname: &a [*a]\n---\n"))
	f.Add([]byte("---\nname: x\ndescription: y\n---"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, _, err := Parse(data)
		if err == nil && (!nameRE().MatchString(fr.Name) || fr.Description == "") {
			t.Fatalf("accepted invalid front matter %+v", fr)
		}
	})
}

func TestLoadBundledAndUser(t *testing.T) {
	set, errs := Load("testdata/user")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "bad") {
		t.Errorf("errs = %v; want one error for the bad skill", errs)
	}
	good, ok := set.Get("good")
	if !ok {
		t.Fatal("user skill good not loaded")
	}
	if good.Source != "user" || !strings.HasPrefix(good.Body(), "# Good") {
		t.Errorf("good: source %q body %q", good.Source, good.Body())
	}
	files, err := good.Files()
	if err != nil || strings.Join(files, ",") != "scripts/hello.py" {
		t.Errorf("files = %v, %v; want [scripts/hello.py]", files, err)
	}
	b, err := good.ReadFile("scripts/hello.py")
	if err != nil || string(b) != "print(\"hello\")\n" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	for _, bad := range []string{"../bad/SKILL.md", "/etc/passwd", "scripts/../../bad/SKILL.md", ""} {
		if _, err := good.ReadFile(bad); !errors.Is(err, ErrBadPath) {
			t.Errorf("ReadFile(%q): got %v; want ErrBadPath", bad, err)
		}
	}
	// The user's trackio replaces the bundled one; other bundled skills stay.
	tr, ok := set.Get("trackio")
	if !ok || tr.Source != "user" || tr.Body() != "user body\n" {
		t.Errorf("trackio = %+v; want the user's", tr)
	}
	var bundledCount int
	for _, s := range set.All() {
		if s.Source == "bundled" {
			bundledCount++
		}
	}
	if bundledCount == 0 {
		t.Error("no bundled skills loaded")
	}
}

func TestLoadMissingUserDir(t *testing.T) {
	set, errs := Load(t.TempDir() + "/nope")
	if len(errs) != 0 {
		t.Errorf("errs = %v; want none", errs)
	}
	if len(set.All()) == 0 {
		t.Error("no bundled skills")
	}
}

// Every bundled skill must parse: a broken SKILL.md in the binary would be
// silently skipped at run time.
func TestBundledSkillsValid(t *testing.T) {
	_, errs := LoadFS(Bundled(), "bundled", "bundled:")
	for _, err := range errs {
		t.Error(err)
	}
}

func TestLoadFS(t *testing.T) {
	fsys := fstest.MapFS{
		"a/SKILL.md":        {Data: []byte("---\nname: a\ndescription: A.\n---\nbody A\n")},
		"a/.hidden/x":       {Data: []byte("x")},
		"a/ref/notes.md":    {Data: []byte("n")},
		".git/SKILL.md":     {Data: []byte("---\nname: git\ndescription: no\n---\n")},
		"loose-file.md":     {Data: []byte("x")},
		"b/nested/SKILL.md": {Data: []byte("---\nname: b\ndescription: too deep\n---\n")},
	}
	got, errs := LoadFS(fsys, "user", "mem")
	if len(errs) != 0 || len(got) != 1 || got[0].Name != "a" {
		t.Fatalf("got %v, %v; want only skill a", got, errs)
	}
	files, _ := got[0].Files()
	if strings.Join(files, ",") != "ref/notes.md" {
		t.Errorf("files = %v; want [ref/notes.md]", files)
	}
}

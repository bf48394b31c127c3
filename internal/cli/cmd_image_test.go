package cli_test

import (
	"archive/tar"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/mlagent/mlagent/internal/image/imagetest"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
)

func TestImageCLI(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	img := imagetest.Image(t, imagetest.Config{Env: []string{"PATH=/usr/bin"}, WorkingDir: "/srv"},
		imagetest.Layer(t, imagetest.LayerTar(t, []imagetest.Entry{{Name: "srv/", Type: tar.TypeDir}, {Name: "srv/f", Body: "x"}})))
	ref := reg.Push(t, "test/cli:1", img)
	archive := imagetest.WriteOCIArchive(t, filepath.Join(t.TempDir(), "img.tar"), img, "v1")
	e := newCLIEnv(t, "DOCKER_CONFIG="+t.TempDir())
	steps := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int
	}{
		{"ls empty", []string{"image", "ls"}, "no images", 0},
		{"pull", []string{"image", "pull", ref}, ref + " ", 0},
		{"pull archive", []string{"image", "pull", archive}, "oci-archive:" + archive + " ", 0},
		{"ls", []string{"image", "ls"}, "never", 0},
		{"inspect", []string{"image", "inspect", ref}, `"working_dir": "/srv"`, 0},
		{"inspect unknown", []string{"image", "inspect", reg.Host + "/test/other:1"}, "", 1},
		{"pull unknown", []string{"image", "pull", reg.Host + "/test/other:1"}, "", 1},
		{"pull bad ref", []string{"image", "pull", "Bad/Ref"}, "", 1},
		{"usage", []string{"image", "pull"}, "", 2},
		{"unknown subcommand", []string{"image", "frob"}, "", 2},
		{"rm", []string{"image", "rm", ref}, "removed " + ref, 0},
		{"rm again", []string{"image", "rm", ref}, "", 1},
		{"ls after rm", []string{"image", "ls"}, "oci-archive:", 0},
	}
	for _, s := range steps {
		out, errOut, code := e.run(t, s.args...)
		if code != s.wantCode || !strings.Contains(out, s.wantOut) {
			t.Errorf("%s: got exit %d, stdout %q (stderr %q); want %d and %q", s.name, code, out, errOut, s.wantCode, s.wantOut)
		}
		if s.name == "pull unknown" && !strings.Contains(errOut, "image not found") {
			t.Errorf("pull unknown: stderr %q; want it to say the image was not found", errOut)
		}
	}
	out, _, _ := e.run(t, "image", "inspect", archive)
	var got []struct {
		ID     string
		Config struct {
			Env []string
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].Config.Env[0] != "PATH=/usr/bin" {
		t.Errorf("inspect: %v %q", err, out)
	}
}

// TestSandboxRunImage is the issue's path end to end: `mlagent sandbox
// run --image` on an image from a registry on loopback, an OCI archive
// and an OCI layout; pulled once, run twice.
func TestSandboxRunImage(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	reg := imagetest.NewRegistry(t)
	img := imagetest.PythonImage(t)
	ref := reg.Push(t, "test/py:1", img)
	dir := t.TempDir()
	archive := imagetest.WriteOCIArchive(t, filepath.Join(dir, "py.tar"), img, "1")
	layout := imagetest.WriteLayout(t, filepath.Join(dir, "py-layout"), img, "1")

	// Registry credentials the CLI may use and no sandbox may see.
	const sentinel = "registry-password-SENTINEL-31"
	dockerDir := t.TempDir()
	os.WriteFile(filepath.Join(dockerDir, "config.json"),
		fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("u:"+sentinel))), 0o600)
	e := newCLIEnv(t, "DOCKER_CONFIG="+dockerDir, "ANTHROPIC_API_KEY=sk-ant-not-inside")

	const script = `import os; print(open("/etc/added-by-layer-2").read().strip(), os.path.exists("/etc/removed-by-whiteout"), os.path.exists("/etc/debian_version"), os.environ.get("IMAGE_VAR"), os.getcwd())`
	const want = "layer 2 False False from-image /srv/app\n"
	var afterFirst int64
	for i, c := range []struct {
		name  string
		image string
		extra []string
	}{
		{"registry, first run pulls", ref, nil},
		{"registry, second run from the cache", ref, nil},
		{"registry, no gateway", ref, []string{"--no-gateway"}},
		{"oci archive", archive, nil},
		{"oci layout", layout, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{"sandbox", "run", "--image", c.image}, c.extra...), "--", "python3", "-c", script)
			out, errOut, code := e.run(t, args...)
			if code != 0 || out != want {
				t.Errorf("got exit %d, %q (stderr %q); want %q", code, out, errOut, want)
			}
			if i == 0 && !strings.Contains(errOut, "pulling "+ref) {
				t.Errorf("first run: stderr %q; want the pull's progress", errOut)
			}
			if i == 0 {
				afterFirst = reg.Requests()
			}
			if i > 0 && reg.Requests() != afterFirst {
				t.Errorf("the registry got %d more requests; want none once the image is cached", reg.Requests()-afterFirst)
			}
		})
	}
	t.Run("no credential inside", func(t *testing.T) {
		out, errOut, code := e.run(t, "sandbox", "run", "--image", ref, "--", "sh", "-c",
			`env; cat /proc/1/environ | tr '\0' '\n'; grep -rl "`+sentinel[:9]+`""`+sentinel[9:]+`" /etc /home /opt /run /tmp /workspace /data 2>/dev/null; echo done`)
		if code != 0 || !strings.Contains(out, "done") {
			t.Fatalf("got exit %d (stderr %q)", code, errOut)
		}
		if strings.Contains(out, sentinel) || strings.Contains(out, "sk-ant-not-inside") {
			t.Errorf("a credential is visible inside: %q", out)
		}
	})
	t.Run("unknown image: clear error, nothing started", func(t *testing.T) {
		_, errOut, code := e.run(t, "sandbox", "run", "--image", reg.Host+"/test/nope:1", "--", "true")
		if code != 1 || !strings.Contains(errOut, "image not found") {
			t.Errorf("got exit %d, stderr %q; want 1 and image not found", code, errOut)
		}
		if out, _, _ := e.run(t, "sandbox", "ls"); !strings.Contains(out, "no sandboxes") {
			t.Errorf("sandbox ls: %q; want none", out)
		}
	})
	t.Run("rm refused while a sandbox runs on it", func(t *testing.T) {
		// An image of its own: removing a name whose root other names
		// keep is no deletion, and needs no check.
		own, err := mutate.Config(img, v1.Config{Env: []string{"PATH=/usr/bin:/bin", "OWN=1"}})
		if err != nil {
			t.Fatal(err)
		}
		layout := imagetest.WriteLayout(t, filepath.Join(t.TempDir(), "own"), own, "1")
		cmd := exec.Command(binary, "sandbox", "run", "--no-gateway", "--name", "busy", "--image", layout, "--", "sleep", "300")
		cmd.Env = e.env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { e.run(t, "sandbox", "kill", "busy"); cmd.Wait() }()
		for i := 0; ; i++ {
			if out, _, _ := e.run(t, "sandbox", "ls"); strings.Contains(out, "busy") && strings.Contains(out, "running") {
				break
			}
			if i == 100 {
				t.Fatal("the sandbox did not start")
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, errOut, code := e.run(t, "image", "rm", layout)
		if code != 1 || !strings.Contains(errOut, "in use") {
			t.Errorf("got exit %d, stderr %q; want 1 and in use", code, errOut)
		}
		e.run(t, "sandbox", "kill", "busy")
		if out, errOut, code := e.run(t, "image", "rm", layout); code != 0 {
			t.Errorf("rm once the sandbox is gone: exit %d, %q %q", code, out, errOut)
		}
	})
	t.Run("image ls shows the last use", func(t *testing.T) {
		out, _, _ := e.run(t, "image", "ls")
		if !strings.Contains(out, ref) || strings.Count(out, "never") != 0 {
			t.Errorf("image ls: %q; want the image with its last use", out)
		}
	})
}

// An image's own words (platform variant, ENV, labels) and a hostile
// layer's entry names reach the terminal through image pull, ls, inspect
// and their errors: no escape sequence or C1 control may survive.
func TestImageCLIHostileText(t *testing.T) {
	const evil = "\x1b]0;pwned\a\x1b[2J\u009b31m"
	img := imagetest.Image(t, imagetest.Config{Env: []string{"PATH=/usr/bin", "NOTE=" + evil}},
		imagetest.Layer(t, imagetest.LayerTar(t, []imagetest.Entry{{Name: "f", Body: "x"}})))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Variant, cf.Config.Labels = evil, map[string]string{"title": evil}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	layout := imagetest.WriteLayout(t, filepath.Join(dir, "ok"), img, "1")
	broken := imagetest.WriteLayout(t, filepath.Join(dir, "broken"), imagetest.Image(t, imagetest.Config{},
		imagetest.Layer(t, imagetest.LayerTar(t, []imagetest.Entry{{Name: "d/", Type: tar.TypeDir},
			{Name: "x" + evil, Type: tar.TypeLink, Linkname: "d"}}))), "1")
	e := newCLIEnv(t, "DOCKER_CONFIG="+t.TempDir())
	for _, args := range [][]string{
		{"image", "pull", layout}, {"image", "ls"}, {"image", "inspect", layout}, {"image", "pull", broken},
	} {
		out, errOut, code := e.run(t, args...)
		if strings.ContainsAny(out+errOut, "\x1b\a\u009b") {
			t.Errorf("%q (exit %d) printed escapes: stdout %q, stderr %q", args, code, out, errOut)
		}
		if args[1] == "inspect" {
			var got []struct{ Config struct{ Env []string } }
			if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].Config.Env[1] != "NOTE="+evil {
				t.Errorf("inspect: %v; want the ENV as the image has it, escaped as JSON: %q", err, out)
			}
		}
	}
}

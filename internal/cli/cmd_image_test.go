package cli_test

import (
	"archive/tar"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/image/imagetest"
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

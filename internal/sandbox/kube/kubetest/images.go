package kubetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The images every test cluster has, imported into its containerd: no
// registry is reachable, so pods use imagePullPolicy IfNotPresent (or
// Never) with these names.
const (
	// PauseImage is the pod sandbox image.
	PauseImage = "mlagent.test/pause:1"
	// SandboxImage is a small root with busybox's tools, /etc/passwd
	// naming uid 1000 and nothing of mlagent: the backend must deliver
	// its binary, as it would to a PyTorch image.
	SandboxImage = "mlagent.test/sandbox:1"
)

// layerFile is one entry of an image layer.
type layerFile struct {
	name string
	mode int64
	body []byte // a regular file's content
	link string // a symlink's target
	dir  bool
}

// dockerArchive writes a `docker save` archive of one single-layer image,
// the format `ctr images import` reads.
func dockerArchive(path, ref string, files []layerFile, entrypoint []string) error {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	mtime := time.Unix(0, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.body); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layerSum := sha256.Sum256(layer.Bytes())
	layerID := hex.EncodeToString(layerSum[:])
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      mtime.UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": entrypoint,
			"Env":        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{ref}, "Layers": []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	out := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		body []byte
	}{{configName, config}, {layerID + "/layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := out.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), ModTime: mtime}); err != nil {
			return err
		}
		if _, err := out.Write(e.body); err != nil {
			return err
		}
	}
	if err := out.Close(); err != nil {
		return err
	}
	return f.Close()
}

// buildImages writes the pause and sandbox images' archives into dir.
func buildImages(dir string) (pause, sbx string, err error) {
	pauseBin := filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-o", pauseBin, "github.com/mlagent/mlagent/internal/sandbox/kube/kubetest/pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("build pause: %v\n%s", err, out)
	}
	body, err := os.ReadFile(pauseBin)
	if err != nil {
		return "", "", err
	}
	pause = filepath.Join(dir, "pause.tar")
	if err := dockerArchive(pause, PauseImage, []layerFile{{name: "pause", mode: 0o755, body: body}}, []string{"/pause"}); err != nil {
		return "", "", fmt.Errorf("pause image: %w", err)
	}

	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", "", fmt.Errorf("sandbox image: %w (install busybox-static)", err)
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return "", "", fmt.Errorf("busybox --list: %w", err)
	}
	files := []layerFile{
		{name: "bin", mode: 0o755, dir: true}, {name: "usr", mode: 0o755, dir: true},
		{name: "usr/bin", mode: 0o755, dir: true}, {name: "etc", mode: 0o755, dir: true},
		{name: "tmp", mode: 0o1777, dir: true}, {name: "home", mode: 0o755, dir: true},
		{name: "bin/busybox", mode: 0o755, body: bb},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\n")},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nagent:x:1000:\n")},
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			files = append(files, layerFile{name: "bin/" + applet, link: "busybox"})
		}
	}
	sbx = filepath.Join(dir, "sandbox.tar")
	if err := dockerArchive(sbx, SandboxImage, files, []string{"/bin/sh"}); err != nil {
		return "", "", fmt.Errorf("sandbox image: %w", err)
	}
	return pause, sbx, nil
}

const busybox = "/bin/busybox"

// ImportFiles builds a one-layer image named ref from files (path in the
// image → content, mode 0755) and loads it into the node, as a pull of
// such an image would.
func (c *Cluster) ImportFiles(ctx context.Context, ref string, files map[string][]byte) error {
	var lf []layerFile
	for name, body := range files {
		lf = append(lf, layerFile{name: strings.TrimPrefix(name, "/"), mode: 0o755, body: body})
	}
	sort.Slice(lf, func(i, j int) bool { return lf[i].name < lf[j].name })
	path := filepath.Join(c.Dir, "images", dnsLabel(ref, 60)+".tar")
	if err := dockerArchive(path, ref, lf, nil); err != nil {
		return err
	}
	return c.ImportImage(ctx, path)
}

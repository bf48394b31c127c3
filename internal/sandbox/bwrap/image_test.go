package bwrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/mlagent/mlagent/internal/image"
	"github.com/mlagent/mlagent/internal/image/imagetest"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
)

// TestImageRoot runs a sandbox on an image pulled from a registry on
// loopback and checks that it sees the image's files and environment,
// not the host's, with the same user, volumes and gateway.
func TestImageRoot(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	env := newTestEnv(t)
	b := env.backend(t)
	reg := imagetest.NewRegistry(t)
	ref := reg.Push(t, "test/py:1", imagetest.PythonImage(t))
	ctx := context.Background()

	// Not pulled yet: a clear error before anything starts.
	_, err := b.Create(ctx, sandbox.Spec{Image: ref})
	if !errors.Is(err, image.ErrNotPulled) {
		t.Fatalf("Create on an image not pulled: got %v; want ErrNotPulled", err)
	}
	if err := b.PrepareImage(ctx, ref, io.Discard); err != nil {
		t.Fatalf("PrepareImage: %v", err)
	}
	after := reg.Requests()
	if err := b.PrepareImage(ctx, ref, io.Discard); err != nil {
		t.Fatalf("PrepareImage again: %v", err)
	}
	if n := reg.Requests() - after; n != 0 {
		t.Errorf("the second PrepareImage made %d registry requests; want 0 (the cache has it)", n)
	}

	const token = "tok-image-root-7"
	sock := serveUnixHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s key=%s", r.Method, r.URL.Path, r.Header.Get("X-Api-Key"))
	}))
	sb := newSandbox(t, b, sandbox.Spec{
		Image: ref, Volumes: sandbox.DefaultMounts(),
		Gateway: sandbox.UnixGateway(sock, token),
	})
	for _, c := range []struct {
		name, script, want string
		code               int
	}{
		{"python from the image", `python3 -c 'import sys; print(sys.version_info[0])'`, "3\n", 0},
		{"a file of layer 2", "cat " + imagetest.Added, "layer 2\n", 0},
		{"a file layer 2 whited out", "cat " + imagetest.Removed, "No such file", 1},
		{"host files invisible", "ls /etc/debian_version /usr/bin/apt-get /usr/lib/python3/dist-packages 2>&1 | grep -c 'No such file'", "3\n", 0},
		{"WORKDIR", "pwd; cat hello.txt", "/srv/app\nhello from the image\n", 0},
		{"user", "id -u; id -g; whoami", "1000\n1000\nagent\n", 0},
		{"image ENV", `echo "$IMAGE_VAR $LANG"`, "from-image C.UTF-8\n", 0},
		{"secret-looking ENV dropped", `echo "[$SECRET_TOKEN]"`, "[]\n", 0},
		{"sandbox ENV", `echo "$HOME $HF_HOME $MLAGENT_IMAGE $PATH"`,
			sandbox.Home + " /data/hf-cache " + ref + " " + sandbox.BinDir + ":/usr/local/bin:/usr/bin:/bin\n", 0},
		{"root read-only", "touch /srv/app/x 2>&1", "Read-only file system", 1},
		{"workspace and volumes writable", "echo w > /workspace/w && echo d > /data/d && echo t > $TRACKIO_DIR/t && cat /workspace/w /data/d $TRACKIO_DIR/t", "w\nd\nt\n", 0},
		{"home and tmp writable", "echo h > ~/h && echo t > /tmp/t && cat ~/h /tmp/t", "h\nt\n", 0},
		{"hosts", "grep -c " + sb.Name() + " /etc/hosts", "1\n", 0},
		{"gateway git config", "cat $GIT_CONFIG_GLOBAL | grep -c " + token, "1\n", 0},
		{"gateway from the image", `python3 -c '
import os, urllib.request
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=b"x", headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"]})
print(urllib.request.urlopen(req, timeout=10).read().decode())'`, "POST /v1/messages key=" + token + "\n", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, code := run(t, sb, "sh", "-c", c.script)
			if code != c.code || !strings.Contains(out, c.want) || c.code == 0 && out != c.want {
				t.Errorf("got exit %d, %q; want %d, %q", code, out, c.code, c.want)
			}
		})
	}
	info := sb.(*Sandbox).Info()
	img, _ := env.images.Lookup(ref)
	notes := strings.Join(info.Notes, "; ")
	if info.Image != ref || info.ImageID != img.ID || !strings.Contains(notes, "image "+ref) || !strings.Contains(notes, "SECRET_TOKEN") {
		t.Errorf("info: got image %q %q, notes %q; want the image, its id and the dropped variable", info.Image, info.ImageID, notes)
	}
	// Another process sees it too (sandbox ls, image rm's in-use check).
	infos, _ := b.List(ctx)
	if len(infos) != 1 || infos[0].ImageID != img.ID {
		t.Errorf("List: got %+v", infos)
	}
	if used, _ := env.images.Lookup(ref); used.LastUsed.IsZero() {
		t.Errorf("the image's last use was not recorded")
	}
}

func TestImageVolumes(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	env := newTestEnv(t)
	b := env.backend(t)
	ref := env.pythonImage(t)
	_, err := b.Create(context.Background(), sandbox.Spec{Image: ref, Volumes: []sandbox.Mount{{Volume: "x", Path: "/models/x"}}})
	if !errors.Is(err, sandbox.ErrInvalidMount) || !strings.Contains(err.Error(), "/models/x") {
		t.Errorf("a volume where the image has no directory: got %v; want ErrInvalidMount naming the path", err)
	}
	sb := newSandbox(t, b, sandbox.Spec{Image: ref, Volumes: []sandbox.Mount{{Volume: "x", Path: "/srv/app"}, {Volume: "y", Path: sandbox.Home + "/models"}}})
	out, code := run(t, sb, "sh", "-c", "echo a > /srv/app/a && echo b > ~/models/b && cat /srv/app/a ~/models/b")
	if code != 0 || out != "a\nb\n" {
		t.Errorf("volumes on an image directory and under home: got %d %q", code, out)
	}
}

// TestImageGPU binds a fake host driver into an image root, as the NVIDIA
// Container Toolkit would bind the real one.
func TestImageGPU(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	devDir := t.TempDir()
	// A device node that is harmless to bind: /dev/null's numbers.
	if err := unix.Mknod(filepath.Join(devDir, "nvidia0"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("cannot make a fake GPU device node (%v); run as root", err)
	}
	unix.Mknod(filepath.Join(devDir, "nvidiactl"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
	host := fakeDriver(t, "550.54.15")
	env := newTestEnv(t)
	b := env.backend(t)
	b.opts.DevDir, b.opts.HostRoot = devDir, host
	b.opts.LDConfig = func() ([]byte, error) { return nil, errors.New("no ldconfig here") }
	ref := env.pythonImage(t)

	sb := newSandbox(t, b, sandbox.Spec{Image: ref, GPU: sandbox.GPURequired})
	out, code := run(t, sb, "sh", "-c", `nvidia-smi; ls /opt/mlagent/nvidia/lib; readlink /opt/mlagent/nvidia/lib/libcuda.so.1; echo "$LD_LIBRARY_PATH"; ls /dev/nvidia0 /dev/nvidiactl`)
	for _, want := range []string{"fake nvidia-smi\n", "libcuda.so.550.54.15\n", "libnvidia-ml.so.550.54.15\n", "libnvidia-ptxjitcompiler.so.550.54.15\n",
		"libcuda.so.550.54.15\n", nvidiaLibDir + "\n", "/dev/nvidia0\n/dev/nvidiactl\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("got exit %d, %q; want %q", code, out, want)
		}
	}
	if !sb.(*Sandbox).Info().GPU {
		t.Errorf("info: no GPU recorded")
	}

	// An image built for a newer CUDA than the driver: a note, or an
	// error when even minor version compatibility cannot help.
	cuda := func(version string) string {
		img, err := mutate.Config(imagetest.PythonImage(t), v1.Config{Env: []string{"PATH=/usr/bin:/bin", "CUDA_VERSION=" + version}})
		if err != nil {
			t.Fatal(err)
		}
		dir := imagetest.WriteLayout(t, filepath.Join(t.TempDir(), "cuda"), img, "cuda")
		if _, err := env.images.Pull(context.Background(), dir, image.PullOptions{}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	newer := cuda("12.8.0")
	sb2 := newSandbox(t, b, sandbox.Spec{Image: newer, GPU: sandbox.GPURequired})
	if notes := strings.Join(sb2.(*Sandbox).Info().Notes, "; "); !strings.Contains(notes, "driver 550.54.15 supports CUDA up to 12.4") {
		t.Errorf("notes %q; want a warning that the driver is older than the image's CUDA", notes)
	}
	b.opts.HostRoot = fakeDriver(t, "470.57.02")
	_, err := b.Create(context.Background(), sandbox.Spec{Image: newer, GPU: sandbox.GPURequired})
	if err == nil || !strings.Contains(err.Error(), "too old") {
		t.Errorf("a driver too old for the image: got %v; want a clear refusal", err)
	}
	sb3 := newSandbox(t, b, sandbox.Spec{Image: newer, GPU: sandbox.GPUOptional})
	if info := sb3.(*Sandbox).Info(); info.GPU || !strings.Contains(strings.Join(info.Notes, "; "), "running without a GPU") {
		t.Errorf("optional GPU with a driver too old: got %+v; want no GPU and a note", info)
	}
}

// fakeDriver is a host tree with an NVIDIA driver's files (not real
// libraries; nothing inside loads them) and a fake nvidia-smi.
func fakeDriver(t *testing.T, version string) string {
	root := t.TempDir()
	lib := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	os.MkdirAll(lib, 0o755)
	for _, base := range []string{"libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so"} {
		os.WriteFile(filepath.Join(lib, base+"."+version), []byte("fake"), 0o644)
		os.Symlink(base+"."+version, filepath.Join(lib, base+".1"))
	}
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/nvidia-smi"), []byte("#!/bin/sh\necho fake nvidia-smi\n"), 0o755)
	return root
}

package bwrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	"github.com/mlagent/mlagent/internal/image"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/nvidia"
)

var _ sandbox.ImagePreparer = (*Backend)(nil)

// PrepareImage pulls ref into the image cache unless it is there
// already, drawing progress on w.
func (b *Backend) PrepareImage(ctx context.Context, ref string, w io.Writer) error {
	if b.opts.Images == nil {
		return errors.New("this sandbox backend has no image cache")
	}
	_, _, err := b.opts.Images.Ensure(ctx, ref, image.PullOptions{Progress: image.TextProgress(w)})
	return err
}

// nvidiaLibDir is where the host's driver libraries appear in a sandbox on
// an image; the binaries go to sandbox.BinDir, on PATH.
const nvidiaLibDir = "/opt/mlagent/nvidia/lib"

// imageRoot is the root of a sandbox on an OCI image: the image's
// flattened root bound read-only at /, its environment, its working
// directory, and the host's GPU driver where the sandbox has GPUs.
type imageRoot struct {
	img     *image.Image
	env     map[string]string
	workdir string
	drv     *nvidia.Driver // nil without a GPU
	binary  string
	notes   []string
	noGPU   bool // a GPU was optional and the driver is unusable
}

// openImage resolves spec.Image in the cache (never the network: Create
// is not the place to pull) and checks what the sandbox needs of it.
func (b *Backend) openImage(spec sandbox.Spec, gpus []string) (*imageRoot, error) {
	if b.opts.Images == nil {
		return nil, errors.New("this sandbox backend has no image cache")
	}
	img, err := b.opts.Images.Use(spec.Image)
	if err != nil {
		return nil, err
	}
	r := &imageRoot{img: img, binary: b.opts.Binary, workdir: sandbox.Workspace}
	r.notes = append(r.notes, "image "+img.Ref+" ("+shortID(img.ID)+")")
	imgEnv, dropped := image.SandboxEnv(img.Config.Env)
	if len(dropped) > 0 {
		r.notes = append(r.notes, "image variables not passed on (they may hold secrets): "+strings.Join(dropped, ", "))
	}
	// The sandbox's own variables (HOME, USER, HF_HOME, TRACKIO_DIR, …) win
	// over the image's, except its PATH (after mlagent's directory) and
	// locale.
	r.env = imgEnv
	for k, v := range sandbox.BaseEnv(spec) {
		switch {
		case k == "PATH" && imgEnv["PATH"] != "":
			r.env[k] = sandbox.BinDir + ":" + imgEnv["PATH"]
		case k == "LANG" && imgEnv["LANG"] != "":
		default:
			r.env[k] = v
		}
	}
	r.env["MLAGENT_IMAGE"] = img.Ref
	if wd := img.Config.WorkingDir; wd != "" {
		if p := path.Clean(wd); path.IsAbs(p) && image.DirIn(img.Root, p) {
			r.workdir = p
		} else {
			r.notes = append(r.notes, "the image's WORKDIR "+wd+" is not a directory in it; commands start in "+sandbox.Workspace)
		}
	}
	for _, m := range spec.Volumes {
		if !mountable(img.Root, m.Path) {
			return nil, fmt.Errorf("%w: volume path %s does not exist in image %s, whose root is read-only; use a directory the image has, or one under /data, %s or /tmp",
				sandbox.ErrInvalidMount, m.Path, img.Ref, sandbox.Home)
		}
	}
	if len(gpus) == 0 {
		return r, nil
	}
	drv, err := nvidia.Host{Root: b.opts.HostRoot, LDConfig: b.opts.LDConfig}.Find()
	if err == nil {
		var warn string
		warn, err = nvidia.Check(drv.Version, nvidia.ImageCUDA(img.Config.Env))
		if warn != "" {
			r.notes = append(r.notes, warn)
			b.log.Warn("GPU driver and image CUDA", "image", img.Ref, "warning", warn)
		}
	}
	if err != nil {
		if spec.GPU == sandbox.GPURequired {
			return nil, fmt.Errorf("GPU with image %s: %w", img.Ref, err)
		}
		r.noGPU = true
		r.notes = append(r.notes, "no usable GPU driver for the image; running without a GPU: "+err.Error())
		b.log.Warn("GPU requested as optional but the driver cannot serve the image; running on the CPU", "image", img.Ref, "err", err)
		return r, nil
	}
	r.drv = drv
	ld := nvidiaLibDir
	if v := imgEnv["LD_LIBRARY_PATH"]; v != "" {
		ld += ":" + v
	}
	// LD_LIBRARY_PATH reaches dlopen("libcuda.so.1") too; Triton looks
	// for libcuda with ldconfig, which knows nothing of this directory.
	r.env["LD_LIBRARY_PATH"] = ld
	r.env["TRITON_LIBCUDA_PATH"] = nvidiaLibDir
	return r, nil
}

// args adds the filesystem of a sandbox on the image: the root bound
// read-only at /, with tmpfs mounts where the sandbox needs files of its
// own (the image's cache was given mount points and links for them when
// it was flattened). data copies a file into a tmpfs.
func (r *imageRoot) args(a *[]string, spec sandbox.Spec, rec *record, data func(string, []byte) error) error {
	*a = append(*a, "--ro-bind", r.img.Root, "/")
	if spec.Gateway != nil {
		*a = append(*a, "--tmpfs", "/run", "--bind", spec.Gateway.Address, gatewaySocket)
	}
	// One tmpfs holds everything made for this sandbox; the root links
	// /etc/hosts and /etc/mlagent into it (image.SandboxEtc).
	*a = append(*a, "--perms", "0755", "--tmpfs", "/opt/mlagent", "--ro-bind", r.binary, sandbox.BinaryPath,
		"--perms", "0755", "--dir", image.SandboxEtc)
	if err := data(image.SandboxEtc+"/hosts", hostsFile(rec.Name)); err != nil {
		return err
	}
	if spec.Gateway != nil {
		if err := data(image.SandboxEtc+"/"+filepath.Base(sandbox.GitConfig), sandbox.GitConfigFile(spec.Gateway.Token)); err != nil {
			return err
		}
	}
	if r.drv != nil {
		for _, l := range r.drv.Libs {
			*a = append(*a, "--ro-bind", l.Path, nvidiaLibDir+"/"+l.Name)
			for _, link := range []struct{ name, target string }{{l.Soname, l.Name}, {l.Base, l.Soname}} {
				if link.name != link.target && link.name != l.Name {
					*a = append(*a, "--symlink", link.target, nvidiaLibDir+"/"+link.name)
				}
			}
		}
		for _, p := range r.drv.Binaries {
			*a = append(*a, "--ro-bind", p, sandbox.BinDir+"/"+filepath.Base(p))
		}
	}
	*a = append(*a, "--remount-ro", "/opt/mlagent")
	return nil
}

// hostsFile is a sandbox's /etc/hosts: its name resolves to loopback.
func hostsFile(name string) []byte {
	return fmt.Appendf(nil, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost\n", name)
}

// tmpfsDirs are where the sandbox mounts a tmpfs of its own: volumes may
// go anywhere below them.
var tmpfsDirs = []string{sandbox.Home, "/tmp"}

// mountable reports whether a volume can be mounted at p on the image
// root: a directory the image has (reached without symlinks), or a path
// under one of the sandbox's own tmpfs mounts.
func mountable(root, p string) bool {
	for _, d := range tmpfsDirs {
		if strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return image.DirIn(root, p)
}

func shortID(id string) string {
	_, h, _ := strings.Cut(id, ":")
	return h[:min(12, len(h))]
}

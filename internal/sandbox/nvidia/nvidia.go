// Package nvidia finds the host's NVIDIA driver user-space files (the
// CUDA driver library, NVML, the PTX JIT compiler, nvidia-smi, …) so that
// a sandbox running on an image can use the host's GPU, as the NVIDIA
// Container Toolkit does for containers, and says when the driver is too
// old for the CUDA version an image was built for.
//
// The lookup: the host's `ldconfig -p` lists the libraries the dynamic
// linker knows; each one named in Libraries (for the host's ABI) is
// resolved to its real file. Where ldconfig lists none, the usual
// directories are searched (/usr/lib/x86_64-linux-gnu, /usr/lib64,
// /lib/x86_64-linux-gnu, /lib64, /usr/lib, /usr/lib/nvidia,
// /usr/local/nvidia/lib64). Binaries are looked for in /usr/bin,
// /usr/local/bin, /bin, /usr/sbin and /usr/local/nvidia/bin. The driver
// version is read from the libcuda (or libnvidia-ml) file name, else
// /proc/driver/nvidia/version.
package nvidia

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Libraries are the driver libraries a CUDA program may load: NVML and
// the driver configuration (utility), the CUDA driver and its helpers
// (compute), the video codecs (video). The list follows
// libnvidia-container's.
var Libraries = []string{
	"libnvidia-ml.so", "libnvidia-cfg.so",
	"libcuda.so", "libcudadebugger.so", "libnvidia-opencl.so", "libnvidia-gpucomp.so",
	"libnvidia-ptxjitcompiler.so", "libnvidia-fatbinaryloader.so", "libnvidia-allocator.so",
	"libnvidia-compiler.so", "libnvidia-nvvm.so", "libnvidia-pkcs11.so", "libnvidia-pkcs11-openssl3.so",
	"libnvidia-encode.so", "libnvcuvid.so", "libnvidia-opticalflow.so",
}

// Binaries are the driver's tools bound into a sandbox.
var Binaries = []string{"nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control", "nvidia-cuda-mps-server"}

// Lib is one driver library on the host.
type Lib struct {
	// Path is the real file on the host (symlinks resolved).
	Path string
	// Name is its file name (libcuda.so.550.54.15); Soname the name
	// programs load (libcuda.so.1); Base the development name
	// (libcuda.so).
	Name, Soname, Base string
}

// Driver is what a sandbox needs of the host's driver.
type Driver struct {
	Libs     []Lib
	Binaries []string // host paths
	// Version is the driver version (550.54.15), "" when unknown.
	Version string
}

// Host is where to look: Root prefixes every path (tests use a fake
// tree); LDConfig returns `ldconfig -p` output (nil runs the host's).
type Host struct {
	Root     string
	LDConfig func() ([]byte, error)
}

var libDirs = []string{
	"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/lib64", "/usr/lib", "/usr/lib/nvidia", "/usr/local/nvidia/lib64",
}

var binDirs = []string{"/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin", "/usr/local/nvidia/bin"}

// ErrNoDriver is returned when no CUDA driver library is found.
var ErrNoDriver = errors.New("the NVIDIA driver's libraries (libcuda.so.1) are not on this host: install the NVIDIA driver, or run without --gpu")

// Find looks the driver up.
func (h Host) Find() (*Driver, error) {
	paths := map[string]string{} // base → host path of some name of it
	if out, err := h.ldconfig(); err == nil {
		for base, p := range parseLDConfig(out, abi()) {
			if _, err := os.Stat(h.path(p)); err == nil {
				paths[base] = p
			}
		}
	}
	if len(paths) == 0 {
		for _, dir := range libDirs {
			for _, base := range Libraries {
				if _, ok := paths[base]; ok {
					continue
				}
				ms, _ := filepath.Glob(h.path(filepath.Join(dir, base+".*")))
				slices.Sort(ms)
				if len(ms) > 0 {
					paths[base] = filepath.Join(dir, filepath.Base(ms[len(ms)-1]))
				}
			}
		}
	}
	d := &Driver{}
	seen := map[string]bool{}
	for _, base := range Libraries {
		p, ok := paths[base]
		if !ok {
			continue
		}
		real, err := filepath.EvalSymlinks(h.path(p))
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		l := Lib{Path: real, Name: filepath.Base(real), Base: base, Soname: soname(real)}
		if l.Soname == "" {
			l.Soname = base + ".1"
		}
		d.Libs = append(d.Libs, l)
		if d.Version == "" && (base == "libcuda.so" || base == "libnvidia-ml.so") {
			d.Version = strings.TrimPrefix(l.Name, base+".")
			if !validVersion(d.Version) {
				d.Version = ""
			}
		}
	}
	if !slices.ContainsFunc(d.Libs, func(l Lib) bool { return l.Base == "libcuda.so" }) {
		return nil, ErrNoDriver
	}
	for _, b := range Binaries {
		for _, dir := range binDirs {
			p := h.path(filepath.Join(dir, b))
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				real, _ := filepath.EvalSymlinks(p)
				d.Binaries = append(d.Binaries, real)
				break
			}
		}
	}
	if d.Version == "" {
		d.Version = h.procVersion()
	}
	return d, nil
}

func (h Host) path(p string) string {
	if h.Root == "" {
		return p
	}
	return filepath.Join(h.Root, p)
}

func (h Host) ldconfig() ([]byte, error) {
	if h.LDConfig != nil {
		return h.LDConfig()
	}
	for _, p := range []string{"/sbin/ldconfig", "/usr/sbin/ldconfig", "/sbin/ldconfig.real"} {
		if _, err := os.Stat(p); err == nil {
			cmd := exec.Command(p, "-p")
			cmd.Env = []string{}
			return cmd.Output()
		}
	}
	return nil, errors.New("no ldconfig")
}

// abi is how `ldconfig -p` marks this architecture's libraries.
func abi() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86-64"
	case "arm64":
		return "AArch64"
	}
	return runtime.GOARCH
}

// parseLDConfig reads `ldconfig -p` lines such as
//
//	libcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1
//
// and returns, per library of Libraries, the path of its first entry
// for abi (the cache lists the newest first).
func parseLDConfig(out []byte, abi string) map[string]string {
	found := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), " (")
		if !ok {
			continue
		}
		flags, p, ok := strings.Cut(rest, ") => ")
		if !ok || !strings.Contains(flags, abi) || !filepath.IsAbs(p) {
			continue
		}
		for _, base := range Libraries {
			if (name == base || strings.HasPrefix(name, base+".")) && found[base] == "" {
				found[base] = p
			}
		}
	}
	return found
}

// soname reads a library's DT_SONAME.
func soname(p string) string {
	f, err := elf.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	names, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(names) == 0 {
		return ""
	}
	return names[0]
}

var procVersionRe = regexp.MustCompile(`Kernel Module\s+(?:for \S+\s+)?([0-9]+(?:\.[0-9]+)+)`)

func (h Host) procVersion() string {
	b, err := os.ReadFile(h.path("/proc/driver/nvidia/version"))
	if err != nil {
		return ""
	}
	if m := procVersionRe.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

func validVersion(v string) bool {
	_, err := parseVersion(v)
	return err == nil && strings.Contains(v, ".")
}

func parseVersion(v string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("version %q", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// compareVersions compares dotted versions; an unreadable one sorts low.
func compareVersions(a, b string) int {
	x, _ := parseVersion(a)
	y, _ := parseVersion(b)
	return slices.Compare(x, y)
}

// cudaDrivers is the minimum Linux driver of each CUDA toolkit release
// (NVIDIA's CUDA release notes, table "CUDA Toolkit and Corresponding
// Driver Versions"), newest first.
var cudaDrivers = []struct{ cuda, driver string }{
	{"13.0", "580.65.06"}, {"12.9", "575.51.03"}, {"12.8", "570.26"}, {"12.6", "560.28.03"},
	{"12.5", "555.42.02"}, {"12.4", "550.54.14"}, {"12.3", "545.23.06"}, {"12.2", "535.54.03"},
	{"12.1", "530.30.02"}, {"12.0", "525.60.13"}, {"11.8", "520.61.05"}, {"11.7", "515.43.04"},
	{"11.6", "510.39.01"}, {"11.5", "495.29.05"}, {"11.4", "470.42.01"}, {"11.3", "465.19.01"},
	{"11.2", "460.27.03"}, {"11.1", "455.23"}, {"11.0", "450.36.06"},
}

// minorCompat is the oldest driver that runs any release of a CUDA major
// version through CUDA's minor version compatibility (with limits: no
// PTX JIT of newer code).
var minorCompat = map[int]string{13: "580.65.06", 12: "525.60.13", 11: "450.80.02"}

// MaxCUDA is the newest CUDA release a driver version supports, "" when
// unknown.
func MaxCUDA(driver string) string {
	for _, c := range cudaDrivers {
		if compareVersions(driver, c.driver) >= 0 {
			return c.cuda
		}
	}
	return ""
}

var requireRe = regexp.MustCompile(`cuda>=([0-9]+\.[0-9]+)`)

// ImageCUDA is the CUDA version an image needs, from its environment:
// NVIDIA_REQUIRE_CUDA ("cuda>=12.4 brand=…") or CUDA_VERSION (12.4.1),
// as the NVIDIA images set them; "" when it names none or sets
// NVIDIA_DISABLE_REQUIRE.
func ImageCUDA(env []string) string {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	if v := vars["NVIDIA_DISABLE_REQUIRE"]; v != "" && v != "0" && v != "false" {
		return ""
	}
	if m := requireRe.FindStringSubmatch(vars["NVIDIA_REQUIRE_CUDA"]); m != nil {
		return m[1]
	}
	if v := vars["CUDA_VERSION"]; v != "" {
		p, err := parseVersion(v)
		if err == nil && len(p) >= 2 {
			return strconv.Itoa(p[0]) + "." + strconv.Itoa(p[1])
		}
	}
	return ""
}

// ErrDriverTooOld is returned by Check when the image cannot run at all.
var ErrDriverTooOld = errors.New("the host's NVIDIA driver is too old for this image")

// Check compares the driver with the CUDA version an image needs. It
// returns an error wrapping ErrDriverTooOld when even CUDA's minor
// version compatibility cannot run it, a warning when only that
// compatibility can (some programs then fail), and "" , nil when the
// driver is new enough or nothing is known.
func Check(driver, imageCUDA string) (warning string, err error) {
	if driver == "" || imageCUDA == "" {
		return "", nil
	}
	var need string
	for _, c := range cudaDrivers { // newest first: the release itself, or the one before
		if compareVersions(c.cuda, imageCUDA) <= 0 {
			need = c.driver
			break
		}
	}
	if need == "" || compareVersions(driver, need) >= 0 {
		return "", nil
	}
	max := MaxCUDA(driver)
	if max == "" {
		max = "none known"
	}
	major, _ := strconv.Atoi(strings.Split(imageCUDA, ".")[0])
	if compat, ok := minorCompat[major]; !ok || compareVersions(driver, compat) < 0 {
		return "", fmt.Errorf("%w: it is %s (CUDA up to %s), and the image is built for CUDA %s, which needs driver ≥ %s; update the driver or use an image built for CUDA ≤ %s",
			ErrDriverTooOld, driver, max, imageCUDA, need, max)
	}
	return fmt.Sprintf("the host's NVIDIA driver %s supports CUDA up to %s; the image is built for CUDA %s (driver ≥ %s). It may run through CUDA's minor version compatibility, but code needing PTX JIT or newer driver features will fail; update the driver or use an image built for CUDA ≤ %s",
		driver, max, imageCUDA, need, max), nil
}

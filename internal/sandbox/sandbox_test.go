package sandbox

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		spec Spec
		want error
	}{
		{"empty is fine", Spec{}, nil},
		{"defaults", Spec{Name: "ok-1", Volumes: DefaultMounts()}, nil},
		{"upper-case name", Spec{Name: "Bad"}, ErrInvalidName},
		{"name with slash", Spec{Name: "a/b"}, ErrInvalidName},
		{"volume over /usr", Spec{Volumes: []Mount{{Volume: "v", Path: "/usr/local"}}}, ErrInvalidMount},
		{"relative path", Spec{Volumes: []Mount{{Volume: "v", Path: "data"}}}, ErrInvalidMount},
		{"unclean path", Spec{Volumes: []Mount{{Volume: "v", Path: "/data/../etc"}}}, ErrInvalidMount},
		{"volume name traversal", Spec{Volumes: []Mount{{Volume: "..", Path: "/data"}}}, ErrInvalidMount},
		{"volume name slash", Spec{Volumes: []Mount{{Volume: "a/b", Path: "/data"}}}, ErrInvalidMount},
		{"two at one path", Spec{Volumes: []Mount{{Volume: "a", Path: "/d"}, {Volume: "b", Path: "/d"}}}, ErrInvalidMount},
		{"hides workspace", Spec{Volumes: []Mount{{Volume: "a", Path: Workspace}}}, ErrInvalidMount},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.spec.Validate()
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("got %v; want %v", err, c.want)
			}
		})
	}
}

func TestGatewayEnvHoldsOnlyTheToken(t *testing.T) {
	env := GatewayEnv("tok")
	for k, v := range env {
		if strings.Contains(v, "sk-") {
			t.Errorf("%s=%s looks like a real key", k, v)
		}
	}
	if env["ANTHROPIC_API_KEY"] != "tok" || env["HF_TOKEN"] != "tok" || env["HTTPS_PROXY"] != "http://mlagent:tok@127.0.0.1:8790" {
		t.Errorf("got %v; want the contract's variables", env)
	}
	if !strings.Contains(string(GitConfigFile("tok")), "extraHeader = Authorization: Bearer tok") {
		t.Errorf("git config lacks the token header")
	}
}

func FuzzValidMount(f *testing.F) {
	for _, s := range []string{"/data", "/usr", "/a/../usr", "//usr", "/proc/x", "/data/"} {
		f.Add("v", s)
	}
	f.Fuzz(func(t *testing.T, vol, p string) {
		if ValidMount(Mount{Volume: vol, Path: p}) != nil {
			return
		}
		for _, r := range reservedMountRoots {
			if p == r || strings.HasPrefix(p, r+"/") {
				t.Errorf("mount at %q accepted inside %s", p, r)
			}
		}
		if strings.Contains(vol, "/") || vol == ".." || vol == "." {
			t.Errorf("volume name %q accepted", vol)
		}
	})
}

func TestParseGPU(t *testing.T) {
	cases := []struct {
		in   string
		want GPU
		err  bool
	}{
		{in: "", want: GPU{}},
		{in: "true", want: GPU{Mode: GPURequired}},
		{in: "optional", want: GPU{Mode: GPUOptional}},
		{in: "2", want: GPU{Mode: GPURequired, Count: 2}},
		{in: "A100", want: GPU{Mode: GPURequired, Type: "A100"}},
		{in: "A100:4", want: GPU{Mode: GPURequired, Type: "A100", Count: 4}},
		{in: "NVIDIA-A100-SXM4-80GB:1", want: GPU{Mode: GPURequired, Type: "NVIDIA-A100-SXM4-80GB", Count: 1}},
		{in: "maybe", err: true},
		{in: "A100:0", err: true},
		{in: "A100:", err: true},
		{in: "a b1", err: true},
		{in: "65", err: true},
	}
	for _, c := range cases {
		got, err := ParseGPU(c.in)
		if (err != nil) != c.err || !c.err && got != c.want {
			t.Errorf("ParseGPU(%q): got %+v, %v; want %+v (error %v)", c.in, got, err, c.want, c.err)
		}
		if err == nil {
			if back, err := ParseGPU(got.String()); err != nil || back != got {
				t.Errorf("ParseGPU(%q).String() = %q reads back as %+v, %v", c.in, got.String(), back, err)
			}
		}
	}
}

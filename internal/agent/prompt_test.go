package agent

import (
	"strings"
	"testing"
)

func TestSystemPromptStatesTheImage(t *testing.T) {
	for _, c := range []struct {
		image     string
		want, not string
	}{
		{"", "Python is /usr/bin/python3 with torch (the host's).", "OCI image"},
		{"index.docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "runs on the OCI image index.docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "/usr/bin/python3 with torch"},
	} {
		got := SystemPrompt(PromptOptions{Image: c.image})
		if !strings.Contains(got, c.want) || strings.Contains(got, c.not) {
			t.Errorf("image %q: prompt lacks %q or has %q:\n%s", c.image, c.want, c.not, got)
		}
		if !strings.Contains(got, "python3 -m venv --system-site-packages /data/venv") {
			t.Errorf("image %q: the prompt does not say how to add packages persistently", c.image)
		}
		if again := SystemPrompt(PromptOptions{Image: c.image}); again != got {
			t.Errorf("the prompt is not stable")
		}
	}
}

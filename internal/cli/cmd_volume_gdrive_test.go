package cli_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/gdrive/gdrivetest"
)

// volume export then volume import, through the real binary and a strict
// fake Drive, gives back the same bytes; no credential reaches the output.
func TestVolumeDriveRoundTrip(t *testing.T) {
	f := gdrivetest.New(t)
	e := newCLIEnv(t, "MLAGENT_GDRIVE_UPSTREAM="+f.URL)

	var all bytes.Buffer // every output, checked for credentials at the end
	out, errOut, code := e.run(t, "volume", "import", "gdrive://root", "data:x")
	all.WriteString(out + errOut)
	if code != 1 || !strings.Contains(errOut, "mlagent secret set google GOOGLE_CREDENTIALS=@") {
		t.Errorf("without credentials: exit %d, stderr %q; want 1 and how to store them", code, errOut)
	}
	credFile := filepath.Join(t.TempDir(), "cred.json")
	os.WriteFile(credFile, f.AuthorizedUserJSON(), 0o600)
	if _, errOut, code := e.run(t, "secret", "set", "google", "GOOGLE_CREDENTIALS=@"+credFile); code != 0 {
		t.Fatalf("secret set @file: exit %d: %s", code, errOut)
	}

	run := filepath.Join(e.home, "volumes", "data", "runs", "r1")
	os.MkdirAll(filepath.Join(run, "plots"), 0o755)
	big := make([]byte, 1<<20+123)
	rand.Read(big)
	files := map[string][]byte{"test_results.csv": []byte("index,label\n0,cat\n"), "model.bin": big, "plots/loss.png": []byte("\x89PNG...")}
	for p, b := range files {
		os.WriteFile(filepath.Join(run, p), b, 0o644)
	}
	out, errOut, code = e.run(t, "volume", "export", "data:/data/runs/r1", "gdrive://root")
	all.WriteString(out + errOut)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
	}
	m := regexp.MustCompile(`created (gdrive://\S+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "exported 3 file(s), 2 folder(s)") {
		t.Fatalf("export output %q; want counts and the created id", out)
	}
	out, errOut, code = e.run(t, "volume", "import", m[1], "data:back/", "--doc", "docx")
	all.WriteString(out + errOut)
	if code != 0 || !strings.Contains(out, "imported 3 file(s), 2 folder(s)") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(e.home, "volumes", "data", "back", "r1", p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want the %d bytes exported", p, len(got), err, len(want))
		}
	}
	for _, secret := range []string{f.ClientSecret, f.RefreshToken, f.AccessToken} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("output shows a credential %q", secret)
		}
	}

	for _, args := range [][]string{
		{"volume", "import", "gdrive://root"},
		{"volume", "import", "not-a-uri", "data:x"},
		{"volume", "import", "gdrive://root", "nocolon"},
		{"volume", "import", "gdrive://root", "data:x", "--doc", "exe"},
		{"volume", "export", "data:x", "gdrive://a/../b"},
	} {
		if _, errOut, code := e.run(t, args...); code != 2 || !strings.Contains(errOut, "mlagent volume") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
	if _, errOut, code := e.run(t, "volume", "export", "nope:x", "gdrive://root"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("export from a missing volume: exit %d, %q", code, errOut)
	}

	// A file the sandbox made sparse uploads its holes as zeros: refused
	// above --max-size unless --yes, before anything reaches Drive.
	huge := filepath.Join(e.home, "volumes", "data", "huge", "ckpt.bin")
	os.MkdirAll(filepath.Dir(huge), 0o755)
	os.WriteFile(huge, []byte("x"), 0o644)
	if err := os.Truncate(huge, 15<<40); err != nil {
		t.Skipf("no 15 TiB sparse file here: %v", err)
	}
	f.Requests = nil
	out, errOut, code = e.run(t, "volume", "export", "data:huge", "gdrive://root")
	if code != 2 || !strings.Contains(errOut, "15 TiB") || !strings.Contains(errOut, "--yes") {
		t.Errorf("export of a 15 TiB sparse file: exit %d, %q %q; want 2, the size and --yes", code, out, errOut)
	}
	if len(f.Requests) != 0 {
		t.Errorf("the refused export made Drive requests: %q", f.Requests)
	}
}

package gdrive

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/gdrive/gdrivetest"
)

func newClient(t *testing.T, f *gdrivetest.Fake) *Client {
	t.Helper()
	ctx := context.Background()
	ts, err := TokenSource(ctx, f.AuthorizedUserJSON(), ScopeFull)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ctx, ts, f.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openRoot(t *testing.T, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// tree reads every file under dir: path → content (directories end in "/").
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel+"/"] = nil
			return nil
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			out[rel] = b
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Export then import gives back every byte, through multipart uploads for
// small files and a resumable upload (with one failed chunk retried) for
// a large one; symlinks are not followed.
func TestExportImportRoundTrip(t *testing.T) {
	f := gdrivetest.New(t)
	f.FailChunk = 2
	c := newClient(t, f)
	c.ChunkSize = 256 << 10
	var warnings []string
	c.Warn = func(m string) { warnings = append(warnings, m) }

	vol := t.TempDir()
	want := map[string][]byte{
		"run/":                 nil,
		"run/big.bin":          randBytes(700 << 10),
		"run/empty.txt":        {},
		"run/metrics.json":     []byte(`{"acc": 0.98}`),
		"run/plots/":           nil,
		"run/plots/loss.png":   randBytes(3000),
		"run/plots/deeper/":    nil,
		"run/plots/deeper/x.y": []byte("x"),
	}
	for p, b := range want {
		full := filepath.Join(vol, p)
		if strings.HasSuffix(p, "/") {
			os.MkdirAll(full, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(t.TempDir(), "host-secret")
	os.WriteFile(secret, []byte("host secret"), 0o600)
	os.Symlink(secret, filepath.Join(vol, "run", "link"))

	ctx := context.Background()
	id, st, err := c.Export(ctx, openRoot(t, vol), "/run/", "root")
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 5 || st.Folders != 3 || st.Skipped != 1 || len(warnings) != 1 || !strings.Contains(warnings[0], "symlink") {
		t.Errorf("export stats %+v, warnings %q; want 5 files, 3 folders, the symlink skipped", st, warnings)
	}
	var resumable, multipart, chunks int
	for _, r := range f.Requests {
		if strings.Contains(r, "upload_id=") {
			chunks++
		}
		if strings.Contains(r, "uploadType=resumable") && !strings.Contains(r, "upload_id") {
			resumable++
		}
		if strings.Contains(r, "uploadType=multipart") {
			multipart++
		}
	}
	if resumable != 1 || multipart != 4 || chunks != 4 {
		t.Errorf("uploads: %d resumable, %d multipart, %d chunk requests; want 1, 4, and 3 chunks + 1 retry\n%s",
			resumable, multipart, chunks, strings.Join(f.Requests, "\n"))
	}
	for _, it := range f.Items {
		if bytes.Contains(it.Data, []byte("host secret")) {
			t.Fatal("the symlink's target was uploaded")
		}
	}

	back := t.TempDir()
	ist, err := c.Import(ctx, id, openRoot(t, back), ".")
	if err != nil {
		t.Fatal(err)
	}
	got := tree(t, back)
	if !reflect.DeepEqual(keys(got), keys(want)) {
		t.Fatalf("imported paths %v; want %v", keys(got), keys(want))
	}
	for p, b := range want {
		if !bytes.Equal(got[p], b) {
			t.Errorf("%s: %d bytes back; want %d identical bytes", p, len(got[p]), len(b))
		}
	}
	if ist.Files != 5 || ist.Folders != 3 || ist.Bytes != int64(700<<10+13+3000+1) {
		t.Errorf("import stats %+v", ist)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func TestImportWorkspaceFilesAndNames(t *testing.T) {
	f := gdrivetest.New(t)
	folder := f.Add(gdrivetest.Item{Name: "Data set", MimeType: gdrivetest.FolderMIME, Parents: []string{"root"}})
	f.Add(gdrivetest.Item{Name: "notes", MimeType: "application/vnd.google-apps.document", Parents: []string{folder},
		Exports: map[string][]byte{"text/markdown": []byte("# Notes\n"), "application/pdf": []byte("%PDF")}})
	f.Add(gdrivetest.Item{Name: "labels", MimeType: "application/vnd.google-apps.spreadsheet", Parents: []string{folder},
		Exports: map[string][]byte{"text/csv": []byte("id,label\n1,cat\n")}})
	f.Add(gdrivetest.Item{Name: "link to elsewhere", MimeType: "application/vnd.google-apps.shortcut", Parents: []string{folder}})
	f.Add(gdrivetest.Item{Name: "a/b", MimeType: "text/plain", Parents: []string{folder}, Data: []byte("slash")})
	f.Add(gdrivetest.Item{Name: "..", MimeType: "text/plain", Parents: []string{folder}, Data: []byte("dots")})
	d1 := f.Add(gdrivetest.Item{Name: "dup.txt", MimeType: "text/plain", Parents: []string{folder}, Data: []byte("one")})
	d2 := f.Add(gdrivetest.Item{Name: "dup.txt", MimeType: "text/plain", Parents: []string{folder}, Data: []byte("two")})
	doc := f.Add(gdrivetest.Item{Name: "report", MimeType: "application/vnd.google-apps.document", Parents: []string{"root"},
		Exports: map[string][]byte{"application/pdf": []byte("%PDF-report")}})

	c := newClient(t, f)
	var warnings []string
	c.Warn = func(m string) { warnings = append(warnings, m) }
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "datasets"), 0o755)
	ctx := context.Background()
	st, err := c.Import(ctx, folder, openRoot(t, dir), "/datasets")
	if err != nil {
		t.Fatal(err)
	}
	got := tree(t, dir)
	want := map[string]string{
		"datasets/Data set/notes.md":                    "# Notes\n",
		"datasets/Data set/labels.csv":                  "id,label\n1,cat\n",
		"datasets/Data set/a_b":                         "slash",
		"datasets/Data set/dup.txt":                     "one",
		"datasets/Data set/dup~" + d2 + ".txt":          "two",
		"datasets/Data set/_" + dotsID(f, "..", folder): "dots",
	}
	_ = d1
	for p, w := range want {
		if string(got[p]) != w {
			t.Errorf("%s = %q; want %q (have %v)", p, got[p], w, keys(got))
		}
	}
	if st.Skipped != 1 || len(warnings) != 1 || !strings.Contains(warnings[0], "link to elsewhere") {
		t.Errorf("skipped %d, warnings %q; want the shortcut skipped with a warning", st.Skipped, warnings)
	}
	// More than one page of children was listed.
	var pages int
	for _, r := range f.Requests {
		if strings.HasPrefix(r, "GET /drive/v3/files?") {
			pages++
		}
	}
	if pages < 4 {
		t.Errorf("%d list requests; want pagination (page size 2, 7 children)", pages)
	}

	// A chosen format, and a single Workspace file to an explicit name.
	c.Formats.Doc = "pdf"
	if _, err := c.Import(ctx, doc, openRoot(t, dir), "r.pdf"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "r.pdf")); string(b) != "%PDF-report" {
		t.Errorf("r.pdf = %q", b)
	}
	c.Formats.Doc = "md"
	if _, err := c.Import(ctx, doc, openRoot(t, dir), "."); err == nil || !strings.Contains(err.Error(), "conversion") {
		t.Errorf("export to a format the file lacks: got %v; want Drive's error", err)
	}
}

func dotsID(f *gdrivetest.Fake, name, parent string) string {
	for _, it := range f.Children(parent) {
		if it.Name == name {
			return it.ID
		}
	}
	return ""
}

// A download cut mid-way resumes with a Range request, and a partial file
// left by an earlier run is continued, not restarted.
func TestImportResumes(t *testing.T) {
	f := gdrivetest.New(t)
	data := randBytes(300 << 10)
	id := f.Add(gdrivetest.Item{Name: "weights.bin", MimeType: "application/octet-stream", Parents: []string{"root"}, Data: data})
	f.CutDownload, f.CutAfter = id, 100<<10
	c := newClient(t, f)
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := c.Import(ctx, id, openRoot(t, dir), "w.bin"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "w.bin")); !bytes.Equal(b, data) {
		t.Fatal("bytes differ after a resumed download")
	}
	if _, err := os.Stat(filepath.Join(dir, "w.bin"+partSuffix)); !os.IsNotExist(err) {
		t.Errorf("part file left behind: %v", err)
	}
	// Leave a partial file as a killed import would; the next run asks
	// for the rest only.
	os.WriteFile(filepath.Join(dir, "again.bin"+partSuffix), data[:1000], 0o644)
	f.Requests = nil
	if _, err := c.Import(ctx, id, openRoot(t, dir), "again.bin"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "again.bin")); !bytes.Equal(b, data) {
		t.Fatal("bytes differ after resuming a part file")
	}
	// A corrupt part file fails the md5 check and is removed.
	bad := bytes.Clone(data[:2000])
	bad[5] ^= 0xff
	os.WriteFile(filepath.Join(dir, "bad.bin"+partSuffix), bad, 0o644)
	if _, err := c.Import(ctx, id, openRoot(t, dir), "bad.bin"); err == nil || !strings.Contains(err.Error(), "md5") {
		t.Errorf("corrupt part: got %v; want an md5 error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.bin"+partSuffix)); !os.IsNotExist(err) {
		t.Errorf("corrupt part file kept: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	f := gdrivetest.New(t)
	ctx := context.Background()
	// A wrong refresh token fails with an error that names no secret.
	var cred map[string]string
	json.Unmarshal(f.AuthorizedUserJSON(), &cred)
	cred["refresh_token"] = "1//wrong-refresh-secret"
	bad, _ := json.Marshal(cred)
	ts, err := TokenSource(ctx, bad, ScopeReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewClient(ctx, ts, f.URL)
	_, err = c.Import(ctx, "root", openRoot(t, t.TempDir()), ".")
	if err == nil || strings.Contains(err.Error(), "wrong-refresh-secret") || strings.Contains(err.Error(), f.ClientSecret) {
		t.Errorf("bad refresh token: got %v; want an error without the secret", err)
	}

	// A service-account key signs a JWT grant the fake verifies.
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	f.ServiceAccountKey, f.ServiceAccountEmail = &key.PublicKey, "bot@proj.iam.gserviceaccount.com"
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": f.ServiceAccountEmail, "private_key_id": "k1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": f.URL + "/token",
	})
	ts, err = TokenSource(ctx, sa, ScopeFull)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil || tok.AccessToken != f.AccessToken {
		t.Errorf("service account token: %v, %v", tok, err)
	}

	for _, in := range []string{`{"type":"external_account","credential_source":{"executable":{"command":"rm -rf /"}}}`, `not json`, `{}`} {
		if _, err := TokenSource(ctx, []byte(in), ScopeFull); err == nil || strings.Contains(err.Error(), "rm -rf") {
			t.Errorf("TokenSource(%q): got %v; want a refusal that does not echo it", in, err)
		}
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"gdrive://1AbC-d_E", "1AbC-d_E"},
		{"gdrive://root", "root"},
		{"https://drive.google.com/drive/folders/1XyZ?usp=sharing", "1XyZ"},
		{"https://drive.google.com/file/d/1Fi_le/view", "1Fi_le"},
		{"https://docs.google.com/spreadsheets/d/1Sheet/edit#gid=0", "1Sheet"},
		{"https://drive.google.com/open?id=1Open", "1Open"},
		{"gdrive://", ""},
		{"gdrive://a b", ""},
		{"gdrive://../x", ""},
		{"/data/x", ""},
	}
	for _, tt := range tests {
		got, err := ParseURI(tt.in)
		if tt.want == "" && err == nil || tt.want != "" && got != tt.want {
			t.Errorf("ParseURI(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		method, path string
		want         gateway.Access
	}{
		{"GET", "/drive/v3/files", gateway.AccessRead},
		{"GET", "/drive/v3/files/1AbC", gateway.AccessRead},
		{"HEAD", "/drive/v3/files/1AbC", gateway.AccessRead},
		{"GET", "/drive/v3/files/1AbC/export", gateway.AccessRead},
		{"GET", "/drive/v3/about", gateway.AccessRead},
		{"POST", "/drive/v3/files", gateway.AccessWrite},
		{"PATCH", "/drive/v3/files/1AbC", gateway.AccessWrite},
		{"DELETE", "/drive/v3/files/1AbC", gateway.AccessWrite},
		{"POST", "/drive/v3/files/1AbC/copy", gateway.AccessWrite},
		{"POST", "/drive/v3/files/1AbC/permissions", gateway.AccessWrite},
		{"POST", "/upload/drive/v3/files", gateway.AccessWrite},
		{"PUT", "/upload/drive/v3/files", gateway.AccessWrite},
		{"GET", "/drive/v3/files/1AbC/permissions", gateway.AccessNone},
		{"GET", "/drive/v2/files", gateway.AccessNone},
		{"GET", "/oauth2/v4/token", gateway.AccessNone},
		{"POST", "/token", gateway.AccessNone},
		{"GET", "/", gateway.AccessNone},
	}
	for _, tt := range tests {
		if got := Classify(tt.method, tt.path, nil); got != tt.want {
			t.Errorf("Classify(%s %s) = %v; want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, tt := range []struct{ method, path, target string }{
		{"PATCH", "/drive/v3/files/1AbC", "1AbC"},
		{"DELETE", "/drive/v3/files/1AbC", "1AbC"},
		{"POST", "/drive/v3/files/1AbC/permissions", "1AbC"},
		{"POST", "/upload/drive/v3/files", "new file"},
		{"POST", "/drive/v3/files", "new file"},
	} {
		a := Describe(tt.method, tt.path, nil)
		if a.Kind != "gdrive:write" || a.Target != tt.target || a.Detail != tt.method+" /gdrive"+tt.path {
			t.Errorf("Describe(%s %s) = %+v; want target %q", tt.method, tt.path, a, tt.target)
		}
	}
}

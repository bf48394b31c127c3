package skills

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"image"
	"image/jpeg"
	"image/png"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mlagent/mlagent/internal/trackio"
)

// The bundled skills' Python helpers are tested here, offline, with the
// interpreter the demo uses (Debian's, which has torch and numpy).

func skillPython(t *testing.T, modules string) string {
	t.Helper()
	py := os.Getenv("MLAGENT_TORCH_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if _, err := os.Stat(py); err != nil {
		t.Skipf("%s not found: `apt-get install python3` (scripts/deps.sh) to run this test", py)
	}
	if out, err := exec.Command(py, "-c", "import "+modules).CombinedOutput(); err != nil {
		t.Skipf("%s cannot import %s (%v): %s; scripts/deps.sh installs them", py, modules, err, out)
	}
	return py
}

// copyScripts copies the named bundled skills' scripts/ folders into one
// temporary directory and returns it.
func copyScripts(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		sub, err := fs.Sub(Bundled(), n+"/scripts")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(dir, sub); err != nil {
			t.Fatalf("copy %s scripts: %v", n, err)
		}
	}
	return dir
}

// runPython runs args in dir and returns stdout's last line and the exit code.
func runPython(t *testing.T, py, dir string, env []string, args ...string) (string, int, string) {
	t.Helper()
	cmd := exec.Command(py, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PYTHONDONTWRITEBYTECODE=1", "NO_PROXY=*", "no_proxy=*"}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], code, stderr.String()
}

// fakeOllama is a strict fake of Ollama's POST /api/chat (non-streamed).
type fakeOllama struct {
	t      *testing.T
	model  string
	schema json.RawMessage
	image  []byte

	mu    sync.Mutex
	calls map[string]int // by prompt
}

type ollamaMessage struct {
	Role    string   `json:"role"`
	Content string   `json:"content"`
	Images  []string `json:"images,omitempty"`
}

func (f *fakeOllama) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	if r.Method != http.MethodPost || r.URL.Path != "/api/chat" {
		fail(http.StatusNotFound, "404 page not found")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		fail(http.StatusBadRequest, "content type "+ct)
		return
	}
	var req struct {
		Model    string          `json:"model"`
		Messages []ollamaMessage `json:"messages"`
		Stream   *bool           `json:"stream"`
		Format   json.RawMessage `json:"format"`
		Options  map[string]any  `json:"options"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	if req.Model != f.model {
		fail(http.StatusNotFound, `model "`+req.Model+`" not found, try pulling it first`)
		return
	}
	if req.Stream == nil || *req.Stream || len(req.Messages) == 0 {
		fail(http.StatusBadRequest, "want stream:false and messages")
		return
	}
	if !bytes.Equal(compactJSON(f.t, req.Format), compactJSON(f.t, f.schema)) {
		fail(http.StatusBadRequest, "format is not the schema")
		return
	}
	first := req.Messages[0]
	if first.Role == "system" {
		first = req.Messages[1]
	}
	f.mu.Lock()
	f.calls[first.Content]++
	n := f.calls[first.Content]
	f.mu.Unlock()
	content := `{"label": "positive", "confidence": 0.9}`
	switch first.Content {
	case "flaky":
		if n == 1 {
			fail(http.StatusServiceUnavailable, "server busy")
			return
		}
	case "badjson":
		if n == 1 {
			content = "Sure! The label is positive."
		} else {
			// The retry carries the rejected answer and the reason.
			last := req.Messages[len(req.Messages)-1]
			if len(req.Messages) < 3 || last.Role != "user" || !strings.Contains(last.Content, "not valid") {
				fail(http.StatusBadRequest, "retry without the correction")
				return
			}
		}
	case "outside-enum":
		content = `{"label": "maybe", "confidence": 0.5}`
	case "image":
		if len(first.Images) != 1 {
			fail(http.StatusBadRequest, "want one image")
			return
		}
		b, err := base64.StdEncoding.DecodeString(first.Images[0])
		if err != nil || !bytes.Equal(b, f.image) {
			fail(http.StatusBadRequest, "image bytes differ")
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"model": req.Model, "created_at": "2025-01-01T00:00:00Z", "done": true, "done_reason": "stop",
		"message": map[string]string{"role": "assistant", "content": content}, "eval_count": 7,
	})
}

func compactJSON(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

func TestOllamaBatch(t *testing.T) {
	py := skillPython(t, "json, urllib.request")
	dir := copyScripts(t, "ollama")
	schema := `{"type": "object", "required": ["label", "confidence"], "additionalProperties": false,
 "properties": {"label": {"enum": ["positive", "negative"]}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}}}`
	img := []byte("\x89PNG\r\n\x1a\nfake image bytes")
	fake := &fakeOllama{t: t, model: "qwen2.5:3b", schema: json.RawMessage(schema), image: img, calls: map[string]int{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("schema.json", schema)
	write("img.png", string(img))
	write("tasks.jsonl", `{"id": "a", "prompt": "good"}
{"id": "b", "prompt": "flaky"}
{"id": "c", "prompt": "badjson"}
{"id": "d", "prompt": "outside-enum"}
{"id": "e", "prompt": "image", "images": ["img.png"]}
`)
	args := []string{"ollama_batch.py", "--model", "qwen2.5:3b", "--input", "tasks.jsonl", "--output", "out.jsonl",
		"--schema", "schema.json", "--system", "You label.", "--host", srv.URL, "--backoff", "0.01", "--retries", "2", "--concurrency", "3"}
	last, code, stderr := runPython(t, py, dir, nil, args...)
	if code != 1 {
		t.Fatalf("exit %d; want 1 (one task failed)\n%s", code, stderr)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(last), &sum); err != nil {
		t.Fatalf("summary %q: %v", last, err)
	}
	if sum["done"] != 4.0 || sum["failed"] != 1.0 || sum["skipped"] != 0.0 {
		t.Errorf("summary = %v; want 4 done, 1 failed, 0 skipped", sum)
	}
	results := readResults(t, filepath.Join(dir, "out.jsonl"))
	for id, want := range map[string]struct {
		ok       bool
		attempts float64
	}{"a": {true, 1}, "b": {true, 2}, "c": {true, 2}, "d": {false, 3}, "e": {true, 1}} {
		r := results[id]
		if r["ok"] != want.ok || r["attempts"] != want.attempts {
			t.Errorf("task %s: got ok=%v attempts=%v; want %v, %v (%v)", id, r["ok"], r["attempts"], want.ok, want.attempts, r)
		}
		if want.ok {
			if out, _ := r["output"].(map[string]any); out["label"] != "positive" {
				t.Errorf("task %s output = %v; want label positive", id, r["output"])
			}
		}
	}
	if e, _ := results["d"]["error"].(string); !strings.Contains(e, "maybe") || !strings.Contains(e, "want one of") {
		t.Errorf("task d error = %q; want the schema's reason", e)
	}

	// A re-run skips what is done and retries only the failure.
	last, _, _ = runPython(t, py, dir, nil, args...)
	if err := json.Unmarshal([]byte(last), &sum); err != nil || sum["skipped"] != 4.0 || sum["failed"] != 1.0 {
		t.Errorf("re-run summary = %s; want 4 skipped, 1 failed", last)
	}

	// An unknown model stops the batch with the pull hint.
	args[2] = "nope:1b"
	args[6] = "out2.jsonl"
	last, code, stderr = runPython(t, py, dir, nil, args...)
	if code != 1 || !strings.Contains(stderr, "ollama pull nope:1b") || !strings.Contains(last, `"error"`) {
		t.Errorf("unknown model: exit %d, stderr %q, summary %s; want exit 1 and the pull hint", code, stderr, last)
	}

	// A task whose image cannot be read fails alone: it used to raise out
	// of the pool and end the batch with a traceback and no summary.
	write("tasks3.jsonl", `{"id": "m", "prompt": "image", "images": ["missing.png"]}
{"id": "g", "prompt": "good"}
`)
	args[2], args[4], args[6] = "qwen2.5:3b", "tasks3.jsonl", "out3.jsonl"
	last, code, stderr = runPython(t, py, dir, nil, args...)
	if err := json.Unmarshal([]byte(last), &sum); err != nil || code != 1 || sum["done"] != 1.0 || sum["failed"] != 1.0 {
		t.Fatalf("unreadable image: exit %d, summary %q; want exit 1, 1 done, 1 failed\n%s", code, last, stderr)
	}
	results = readResults(t, filepath.Join(dir, "out3.jsonl"))
	if e, _ := results["m"]["error"].(string); results["m"]["ok"] != false || !strings.Contains(e, "missing.png") || results["g"]["ok"] != true {
		t.Errorf("results = %v; want m failed naming missing.png, g ok", results)
	}
}

func readResults(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("result line %q: %v", line, err)
		}
		out[r["id"].(string)] = r
	}
	return out
}

// TestSchemaValidate checks the batch client's schema checker on its own.
func TestSchemaValidate(t *testing.T) {
	py := skillPython(t, "json")
	dir := copyScripts(t, "ollama")
	prog := `import json, sys, ollama_batch as ob
cases = json.load(sys.stdin)
out = []
for schema, value in cases:
    try:
        ob.validate(value, schema)
        out.append("ok")
    except ob.SchemaError as e:
        out.append(str(e))
print(json.dumps(out))`
	cases := []struct {
		schema, value string
		want          string // "ok" or a substring of the error
	}{
		{`{"type":"integer"}`, `3`, "ok"},
		{`{"type":"integer"}`, `3.5`, "want integer"},
		{`{"type":"integer"}`, `true`, "want integer"},
		{`{"type":["string","null"]}`, `null`, "ok"},
		{`{"type":"object","required":["a"]}`, `{}`, "missing required key 'a'"},
		{`{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`, `{"a":"x","b":1}`, "unexpected key 'b'"},
		{`{"type":"array","items":{"enum":[1,2]},"maxItems":2}`, `[1,3]`, "$[1]"},
		{`{"type":"array","maxItems":1}`, `[1,2]`, "at most 1"},
		{`{"type":"string","pattern":"^[a-z]+$","maxLength":3}`, `"abcd"`, "longer than 3"},
		{`{"type":"number","minimum":0,"maximum":1}`, `1.5`, "> maximum 1"},
		{`{"anyOf":[{"type":"string"},{"type":"null"}]}`, `1`, "none of anyOf"},
		{`{"properties":{"s":{"properties":{"n":{"type":"number"}}}}}`, `{"s":{"n":"x"}}`, "$.s.n"},
	}
	var in []json.RawMessage
	for _, c := range cases {
		in = append(in, json.RawMessage(`[`+c.schema+`,`+c.value+`]`))
	}
	b, _ := json.Marshal(in)
	cmd := exec.Command(py, "-c", prog)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(b)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(cases) {
		t.Fatalf("got %s; want %d results", out, len(cases))
	}
	for i, c := range cases {
		if c.want == "ok" && got[i] != "ok" || c.want != "ok" && !strings.Contains(got[i], c.want) {
			t.Errorf("validate(%s, %s) = %q; want %q", c.value, c.schema, got[i], c.want)
		}
	}
}

func writePNG(t *testing.T, path string, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	if path != "" {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// labelFile parses a YOLO label file into rows of numbers.
func labelFile(t *testing.T, path string) [][]float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var row []float64
		for _, f := range strings.Fields(line) {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", path, line, err)
			}
			row = append(row, v)
		}
		rows = append(rows, row)
	}
	return rows
}

func near(got, want [][]float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if len(got[i]) != len(want[i]) {
			return false
		}
		for j := range got[i] {
			if math.Abs(got[i][j]-want[i][j]) > 1e-5 {
				return false
			}
		}
	}
	return true
}

func TestToYOLOFromCOCO(t *testing.T) {
	py := skillPython(t, "json")
	dir := copyScripts(t, "ultralytics")
	imgs := filepath.Join(dir, "coco", "images")
	os.MkdirAll(imgs, 0o755)
	a := writePNG(t, filepath.Join(imgs, "a.png"), 200, 100)
	writePNG(t, filepath.Join(imgs, "b.png"), 50, 40)
	// Category ids 7 and 3: YOLO ids follow id order, so "cat"(3)=0, "dog"(7)=1.
	// Image b has no width/height: read from the PNG header.
	coco := `{"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 100},
                         {"id": 2, "file_name": "b.png"}],
 "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
 "annotations": [
  {"id": 1, "image_id": 1, "category_id": 7, "bbox": [20, 10, 100, 50], "iscrowd": 0,
   "segmentation": [[20, 10, 120, 10, 120, 60], [0, 0, 1, 1, 2, 2, 3, 3]]},
  {"id": 2, "image_id": 1, "category_id": 3, "bbox": [190, 90, 30, 30], "iscrowd": 0},
  {"id": 3, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 1},
  {"id": 4, "image_id": 2, "category_id": 3, "bbox": [0, 0, 25, 20], "iscrowd": 0,
   "segmentation": [[0, 0, 25, 0, 25, 20, 0, 20]]}]}`
	os.WriteFile(filepath.Join(dir, "coco", "train.json"), []byte(coco), 0o644)

	last, code, stderr := runPython(t, py, dir, nil, "to_yolo.py", "--out", "yolo",
		"--coco", "coco/train.json", "--images", "coco/images", "--split", "train")
	if code != 0 {
		t.Fatalf("to_yolo: exit %d\n%s", code, stderr)
	}
	var sum struct {
		Names   []string       `json:"names"`
		Images  map[string]int `json:"images"`
		Objects map[string]int `json:"objects"`
	}
	if err := json.Unmarshal([]byte(last), &sum); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sum.Names, []string{"cat", "dog"}) || sum.Images["train"] != 2 || sum.Objects["train"] != 3 {
		t.Errorf("summary = %+v; want names [cat dog], 2 images, 3 objects (crowd skipped)", sum)
	}
	// dog box 20,10 100x50 in 200x100 → cx .35 cy .35 w .5 h .5; the cat box is
	// clipped at the border: x 190..200 → cx .975 w .05, y 90..100 → cy .95 h .1.
	if got := labelFile(t, filepath.Join(dir, "yolo/labels/train/a.txt")); !near(got, [][]float64{{1, .35, .35, .5, .5}, {0, .975, .95, .05, .1}}) {
		t.Errorf("a.txt = %v", got)
	}
	if got := labelFile(t, filepath.Join(dir, "yolo/labels/train/b.txt")); !near(got, [][]float64{{0, .25, .25, .5, .5}}) {
		t.Errorf("b.txt = %v", got)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "yolo/images/train/a.png")); err != nil || !bytes.Equal(b, a) {
		t.Errorf("image a copied: %v, equal %v", err, bytes.Equal(b, a))
	}
	yaml, _ := os.ReadFile(filepath.Join(dir, "yolo/data.yaml"))
	for _, want := range []string{"train: images/train\n", "  0: \"cat\"\n", "  1: \"dog\"\n", "path: \"" + filepath.Join(dir, "yolo") + "\"\n"} {
		if !strings.Contains(string(yaml), want) {
			t.Errorf("data.yaml lacks %q:\n%s", want, yaml)
		}
	}

	// Segmentation keeps the largest polygon, normalised.
	_, code, stderr = runPython(t, py, dir, nil, "to_yolo.py", "--out", "seg", "--task", "segment",
		"--coco", "coco/train.json", "--images", "coco/images")
	if code != 0 {
		t.Fatalf("to_yolo --task segment: exit %d\n%s", code, stderr)
	}
	if got := labelFile(t, filepath.Join(dir, "seg/labels/train/a.txt")); !near(got, [][]float64{{1, .1, .1, .6, .1, .6, .6}}) {
		t.Errorf("seg a.txt = %v; want the dog triangle", got)
	}
	if got := labelFile(t, filepath.Join(dir, "seg/labels/train/b.txt")); !near(got, [][]float64{{0, 0, 0, .5, 0, .5, .5, 0, .5}}) {
		t.Errorf("seg b.txt = %v", got)
	}

	// Two annotation files and one --split: the second file was dropped
	// without a word (zip stops at the shorter list).
	_, code, stderr = runPython(t, py, dir, nil, "to_yolo.py", "--out", "two",
		"--coco", "coco/train.json", "--images", "coco/images", "--coco", "coco/train.json", "--images", "coco/images", "--split", "train")
	if code != 2 || !strings.Contains(stderr, "--split") {
		t.Errorf("two --coco, one --split: exit %d, %q; want 2 and a usage error", code, stderr)
	}
	// An output path YAML would misread unquoted.
	odd := filepath.Join(dir, "runs #1: pets")
	if _, code, stderr = runPython(t, py, dir, nil, "to_yolo.py", "--out", odd, "--coco", "coco/train.json", "--images", "coco/images"); code != 0 {
		t.Fatalf("to_yolo into %q: exit %d\n%s", odd, code, stderr)
	}
	yaml, _ = os.ReadFile(filepath.Join(odd, "data.yaml"))
	if !strings.Contains(string(yaml), "path: \""+odd+"\"\n") {
		t.Errorf("data.yaml path not quoted:\n%s", yaml)
	}
}

func TestToYOLOFromHFRows(t *testing.T) {
	py := skillPython(t, "json")
	dir := copyScripts(t, "ultralytics")
	pngBytes := writePNG(t, filepath.Join(dir, "p.png"), 100, 50)
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewRGBA(image.Rect(0, 0, 64, 32)), nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "j.jpg"), jb.Bytes(), 0o644)
	// Rows as the datasets library stores them: image cells {bytes, path},
	// objects {bbox, category}; categories as ClassLabel ints or names.
	prog := `import json, to_yolo
png = open("p.png", "rb").read()
jpg = open("j.jpg", "rb").read()
rows = [
  {"image_id": 10, "image": {"bytes": png, "path": None}, "objects": {"bbox": [[10, 5, 60, 25]], "category": [1]}},
  {"image_id": 11, "image": {"bytes": jpg, "path": "x.jpg"}, "objects": {"bbox": [[0, 0, 32, 16], [5, 5, 5, 5]], "category": ["person", "mask"]}},
  {"image_id": 12, "image": {"bytes": None, "path": "p.png"}, "width": 100, "height": 50, "objects": {"bbox": [], "category": []}},
]
w = to_yolo.Writer("out")
to_yolo.convert_hf_rows(rows, ["person", "mask"], w, "val", "pascal_voc")
w.write_yaml(["person", "mask"])
print(json.dumps({"counts": w.counts, "objects": w.objects, "sizes": [to_yolo.image_size(png), to_yolo.image_size(jpg)]}))`
	last, code, stderr := runPython(t, py, dir, nil, "-c", prog)
	if code != 0 {
		t.Fatalf("convert_hf_rows: exit %d\n%s", code, stderr)
	}
	var sum struct {
		Counts  map[string]int `json:"counts"`
		Objects map[string]int `json:"objects"`
		Sizes   [][2]int       `json:"sizes"`
	}
	if err := json.Unmarshal([]byte(last), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Counts["val"] != 3 || sum.Objects["val"] != 2 || sum.Sizes[0] != [2]int{100, 50} || sum.Sizes[1] != [2]int{64, 32} {
		t.Errorf("got %+v; want 3 images, 2 objects (x1==x2 box dropped), sizes 100x50 and 64x32", sum)
	}
	// pascal_voc 10,5..60,25 in 100x50 → cx .35 cy .3 w .5 h .4.
	if got := labelFile(t, filepath.Join(dir, "out/labels/val/10.txt")); !near(got, [][]float64{{1, .35, .3, .5, .4}}) {
		t.Errorf("10.txt = %v", got)
	}
	if got := labelFile(t, filepath.Join(dir, "out/labels/val/11.txt")); !near(got, [][]float64{{0, .25, .25, .5, .5}}) {
		t.Errorf("11.txt = %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "out/images/val/11.jpg")); err != nil {
		t.Errorf("JPEG kept its extension: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out/images/val/10.png")); !bytes.Equal(b, pngBytes) {
		t.Error("PNG bytes changed on the way")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out/labels/val/12.txt")); err != nil || len(b) != 0 {
		t.Errorf("an image without objects: label %q, %v; want an empty file", b, err)
	}
}

// fakeTrainerPy builds objects shaped like ultralytics 8.3's BaseTrainer
// and YOLO model, as far as yolo_trackio reads them.
const fakeTrainerPy = `import types, pathlib, torch

class Trainer:
    def __init__(self):
        self.args = types.SimpleNamespace(model="yolo11n.pt", data="data.yaml", epochs=2, imgsz=64,
                                          name="pets-run", save_dir=pathlib.Path("/data/runs/x"))
        self.epochs = 2
        self.epoch = 0
        self.loss_names = ("box_loss", "cls_loss", "dfl_loss")
        self.tloss = None
        self.lr = {}
        self.metrics = {}
        self.validator = None

    def label_loss_items(self, loss_items=None, prefix="train"):
        keys = [f"{prefix}/{x}" for x in self.loss_names]
        if loss_items is None:
            return keys
        return dict(zip(keys, [round(float(x), 5) for x in loss_items]))

class Model:
    def __init__(self):
        self.callbacks = {}
    def add_callback(self, event, fn):
        self.callbacks.setdefault(event, []).append(fn)
    def fire(self, event, trainer):
        for fn in self.callbacks.get(event, []):
            fn(trainer)

def simulate(model):
    tr = Trainer()
    model.fire("on_pretrain_routine_start", tr)
    for epoch in range(2):
        tr.epoch = epoch
        tr.tloss = torch.tensor([1.5 - epoch, 1.0 - epoch / 2, 0.8])
        tr.lr = {"lr/pg0": 0.01 / (epoch + 1), "lr/pg1": 0.01, "lr/pg2": 0.01}
        model.fire("on_train_epoch_end", tr)
        tr.metrics = {"metrics/precision(B)": 0.5 + epoch / 10, "metrics/mAP50(B)": torch.tensor(0.4 + epoch / 10),
                      "metrics/mAP50-95(B)": 0.25, "val/box_loss": 1.2, "fitness": None}
        model.fire("on_fit_epoch_end", tr)
    box = types.SimpleNamespace(maps=__import__("numpy").array([0.31, 0.62]))
    tr.validator = types.SimpleNamespace(metrics=types.SimpleNamespace(names={0: "cat", 1: "dog"}, box=box))
    model.fire("on_train_end", tr)
`

func TestYOLOTrackioCallback(t *testing.T) {
	py := skillPython(t, "torch, numpy, sqlite3")
	dir := copyScripts(t, "ultralytics", "trackio")
	os.WriteFile(filepath.Join(dir, "fake_ultralytics.py"), []byte(fakeTrainerPy), 0o644)
	tdir := filepath.Join(dir, "trackio-volume")
	prog := `import fake_ultralytics as fu, yolo_trackio
m = fu.Model()
yolo_trackio.add_trackio_callbacks(m, project="pets", config={"dataset": "pets-yolo"})
fu.simulate(m)
print("{}")`
	if _, code, stderr := runPython(t, py, dir, []string{"TRACKIO_DIR=" + tdir}, "-c", prog); code != 0 {
		t.Fatalf("callback run: exit %d\n%s", code, stderr)
	}
	ctx := context.Background()
	r, err := trackio.OpenReader(ctx, filepath.Join(tdir, trackio.DBFileName("pets")))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rows, err := r.ReadMetrics(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	byStep := map[int64]map[string]float64{}
	for _, row := range rows {
		if row.RunName != "pets-run" {
			t.Errorf("run name %q; want the trainer's name pets-run", row.RunName)
		}
		v, err := trackio.Values(row.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if byStep[row.Step] == nil {
			byStep[row.Step] = map[string]float64{}
		}
		for k, x := range v {
			byStep[row.Step][k] = x
		}
	}
	want := map[int64]map[string]float64{
		1: {"train/box_loss": 1.5, "train/cls_loss": 1.0, "train/dfl_loss": 0.8, "lr/pg0": 0.01, "lr/pg1": 0.01, "lr/pg2": 0.01,
			"val/precision(B)": 0.5, "val/mAP50(B)": 0.4, "val/mAP50-95(B)": 0.25, "val/box_loss": 1.2, "epoch": 1},
		2: {"train/box_loss": 0.5, "train/cls_loss": 0.5, "train/dfl_loss": 0.8, "lr/pg0": 0.005, "lr/pg1": 0.01, "lr/pg2": 0.01,
			"val/precision(B)": 0.6, "val/mAP50(B)": 0.5, "val/mAP50-95(B)": 0.25, "val/box_loss": 1.2, "epoch": 2,
			"test/per_class_mAP50-95/cat": 0.31, "test/per_class_mAP50-95/dog": 0.62},
	}
	if len(byStep) != len(want) {
		t.Fatalf("steps = %v; want 1 and 2", byStep)
	}
	for step, kv := range want {
		for k, x := range kv {
			if got, ok := byStep[step][k]; !ok || math.Abs(got-x) > 1e-5 {
				t.Errorf("step %d %s = %v (present %v); want %v", step, k, got, ok, x)
			}
		}
		if len(byStep[step]) != len(kv) {
			t.Errorf("step %d keys = %v; want exactly %v", step, slices.Sorted(maps.Keys(byStep[step])), slices.Sorted(maps.Keys(kv)))
		}
	}
	cfgs, err := r.ReadConfigs(ctx, 0)
	if err != nil || len(cfgs) != 1 {
		t.Fatalf("configs = %v, %v; want one", cfgs, err)
	}
	var cfg map[string]any
	json.Unmarshal(cfgs[0].Raw, &cfg)
	if cfg["model"] != "yolo11n.pt" || cfg["dataset"] != "pets-yolo" || cfg["save_dir"] != "/data/runs/x" {
		t.Errorf("config = %v; want the trainer args (paths as strings) plus the extra config", cfg)
	}
}

func TestYOLOPredictCSV(t *testing.T) {
	py := skillPython(t, "torch, csv")
	dir := copyScripts(t, "ultralytics")
	prog := `import json, types, torch, yolo_predict_csv as yp
class Model:
    def predict(self, source, stream, verbose, **kw):
        assert stream is True and kw == {"conf": 0.3}, kw
        names = {0: "cat", 1: "dog"}
        yield types.SimpleNamespace(path="a.jpg", names=names, orig_shape=(480, 640),
            boxes=types.SimpleNamespace(xyxy=torch.tensor([[1.0, 2.0, 30.5, 40.25], [5, 6, 7, 8]]),
                                        cls=torch.tensor([1.0, 0.0]), conf=torch.tensor([0.9, 0.45])))
        yield types.SimpleNamespace(path="b.jpg", names=names, orig_shape=(100, 200),
            boxes=types.SimpleNamespace(xyxy=torch.zeros((0, 4)), cls=torch.zeros(0), conf=torch.zeros(0)))
print(json.dumps(yp.predict_to_csv(Model(), "imgs/", "pred.csv", conf=0.3)))`
	last, code, stderr := runPython(t, py, dir, nil, "-c", prog)
	if code != 0 {
		t.Fatalf("predict_to_csv: exit %d\n%s", code, stderr)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(last), &sum); err != nil {
		t.Fatal(err)
	}
	if sum["images"] != 2.0 || sum["detections"] != 2.0 || !reflect.DeepEqual(sum["per_class"], map[string]any{"cat": 1.0, "dog": 1.0}) ||
		math.Abs(sum["mean_confidence"].(float64)-0.675) > 1e-6 {
		t.Errorf("summary = %v", sum)
	}
	f, err := os.Open(filepath.Join(dir, "pred.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"image", "detection", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2", "width", "height"},
		{"a.jpg", "0", "1", "dog", "0.900000", "1.00", "2.00", "30.50", "40.25", "640", "480"},
		{"a.jpg", "1", "0", "cat", "0.450000", "5.00", "6.00", "7.00", "8.00", "640", "480"},
		{"b.jpg", "-1", "", "", "", "", "", "", "", "200", "100"},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Errorf("CSV = %q;\nwant %q", recs, want)
	}
}

// The two skills of issue 17 ship in the binary with their scripts.
func TestBundledOllamaAndUltralytics(t *testing.T) {
	set, errs := Load("")
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	for name, files := range map[string][]string{
		"ollama":      {"references/schemas.md", "references/serving.md", "scripts/ollama_batch.py"},
		"ultralytics": {"references/export.md", "scripts/to_yolo.py", "scripts/yolo_predict_csv.py", "scripts/yolo_trackio.py"},
	} {
		s, ok := set.Get(name)
		if !ok {
			t.Errorf("skill %s is not bundled", name)
			continue
		}
		got, err := s.Files()
		if err != nil || !reflect.DeepEqual(got, files) {
			t.Errorf("%s files = %v, %v; want %v", name, got, err, files)
		}
		for _, f := range files {
			if !strings.Contains(s.Body(), filepath.Base(f)) && !strings.Contains(s.Body(), f) {
				t.Errorf("%s SKILL.md does not mention %s: progressive disclosure needs a pointer", name, f)
			}
		}
	}
}

package demo

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/sandbox"
)

// The two things the demo's user says, as in the original session.
const (
	FirstPrompt  = "Train a model for categorizing multispectral satellite imagery"
	SecondPrompt = "now run on test set, and write results as a csv to the volume"
)

// Paths inside the sandbox.
const (
	dataDir  = sandbox.DataMount + "/datasets/eurosat-synth"
	lastRun  = sandbox.Workspace + "/last_run"
	workDir  = sandbox.Workspace
	runStem  = "eurosat13-cnn"
	trackioP = "eurosat-multispectral"
)

// Sizes sets how much the demo generates and trains; the tests shrink it.
type Sizes struct {
	PerClass  int // synthetic tiles per class (all splits)
	Epochs    int
	BatchSize int
}

// DefaultSizes finish data generation, training and inference in a few
// minutes on two CPU cores.
var DefaultSizes = Sizes{PerClass: 300, Epochs: 6, BatchSize: 64}

// Responder plays the model's side of the reference session. It makes the
// model's decisions only: every number in its replies is parsed out of a
// tool result that code in the sandbox produced. Each reply is chosen by
// looking at the conversation (which tool calls were answered), so the
// script is robust to retries and resumes. Safe for concurrent use.
type Responder struct {
	Sizes Sizes

	mu    sync.Mutex
	polls int
}

var _ fakeapi.Responder = (*Responder)(nil)

// step ids are embedded in tool_use ids: toolu_demo_<step>_<n>.
var stepID = regexp.MustCompile(`^toolu_demo_([a-z0-9]+)_`)

func call(step, name string, n int, input any) fakeapi.ReplyBlock {
	return fakeapi.ToolUse(fmt.Sprintf("toolu_demo_%s_%d", step, n), name, input)
}

// Respond implements fakeapi.Responder.
func (r *Responder) Respond(req *fakeapi.Request) *fakeapi.Reply {
	results := req.LastToolResults()
	if len(results) == 0 {
		text := req.LastUserText()
		switch {
		case strings.Contains(text, "run on test set"):
			return r.writeInfer()
		default:
			return r.explore()
		}
	}
	byStep := map[string]fakeapi.Block{}
	step := ""
	for _, b := range results {
		m := stepID.FindStringSubmatch(b.ToolUseID)
		if m == nil {
			return fakeapi.Text("(demo script: unexpected tool result " + b.ToolUseID + ")")
		}
		step = m[1]
		byStep[b.ToolUseID] = b
	}
	out := func(id string) (string, bool) {
		b, ok := byStep[id]
		if !ok {
			return "", false
		}
		return req.ToolResultText(b), !b.IsError
	}
	for _, b := range results {
		if b.IsError && step != "ask" {
			return failed(b.Name, req.ToolResultText(b))
		}
	}
	switch step {
	case "explore":
		return r.propose()
	case "ask":
		answer, _ := out("toolu_demo_ask_2")
		return r.writeCode(strings.TrimPrefix(strings.TrimSpace(answer), "The user answered: "))
	case "write":
		return r.prepare()
	case "prep":
		return r.startTraining()
	case "train":
		o, _ := out("toolu_demo_train_1")
		return r.poll(jobID(o))
	case "poll":
		for id := range byStep {
			o, _ := out(id)
			if strings.Contains(o, ": running]") {
				return r.poll(jobID(o))
			}
			if !strings.Contains(o, ": exited 0]") && !strings.Contains(o, "exit 0]") {
				return failed("training", o)
			}
		}
		return r.readMetrics()
	case "metrics":
		o, _ := out("toolu_demo_metrics_1")
		return trainReport(o)
	case "infw":
		return r.runInfer()
	case "infer":
		o, _ := out("toolu_demo_infer_1")
		return inferReport(o)
	}
	return fakeapi.Text("(demo script: no step for " + step + ")")
}

func failed(what, output string) *fakeapi.Reply {
	return fakeapi.Text(fmt.Sprintf("The %s step failed, so I stopped here rather than guess. Its output:\n\n```\n%s\n```", what, tail(output, 2000)))
}

func (r *Responder) explore() *fakeapi.Reply {
	return fakeapi.ToolCalls(
		"Multispectral imagery is a good fit for a small fine-tuned model: an LLM cannot see the ten non-RGB bands, a vision model can take all 13. Let me load my fine-tuning notes and look at what the Hub has.",
		call("explore", "skill", 1, map[string]any{"name": "transformers"}),
		call("explore", "hf_search", 2, map[string]any{"search": "eurosat", "kind": "datasets", "limit": 5}),
		call("explore", "hf_search", 3, map[string]any{"search": "swin", "kind": "models", "filter": "image-classification", "limit": 5}),
	)
}

const proposal = `Here is what I'd suggest, with the trade-offs:

**Dataset**
1. **blanchon/EuroSAT_MSI**: 27,000 Sentinel-2 tiles, 64×64, all 13 bands, 10 land-use classes. The multispectral version is the point: the infrared bands separate vegetation types that look alike in RGB.
2. blanchon/EuroSAT_RGB: the same tiles as 3-band RGB; simpler, but throws away most of the signal.

**Model**
1. **Swin Transformer (microsoft/swin-tiny-patch4-window7-224)** adapted to 13 bands: replicate the pretrained RGB patch-embedding weights across the 13 bands and scale them by 3/13, so a pretrained model starts from its ImageNet features; new 10-class head; window size and resolution adjusted for 64×64 tiles. Strong accuracy, ~28M parameters, wants a GPU.
2. ResNet-50 (timm) with in_chans=13: simpler, a little weaker.
3. A small CNN from scratch: trains on a CPU in minutes; the right choice when there is no GPU.

This machine has **no GPU** and no network, so for this run I'll use the offline stand-in of EuroSAT (same shape: 13 bands, 64×64, 10 classes, generated in the sandbox) and a small CNN whose first layer goes through the same 13-band expansion as the Swin recipe, which I'll also check numerically. With a GPU and the real data set the same steps train the Swin model.`

func (r *Responder) propose() *fakeapi.Reply {
	return fakeapi.ToolCalls(proposal,
		call("ask", "todo", 1, map[string]any{"items": []map[string]string{
			{"content": "Agree on model, dataset and Hugging Face username", "status": "in_progress"},
			{"content": "Write data, model (13-band expansion) and training code", "status": "pending"},
			{"content": "Train with Trackio logging; checkpoint to " + sandbox.RunsDir, "status": "pending"},
			{"content": "Report validation and test metrics", "status": "pending"},
		}}),
		call("ask", "ask_user", 2, map[string]any{
			"question": "Which model and dataset should I use? (You can also give your Hugging Face username for a Trackio Space.)",
			"choices": []string{
				"Swin-tiny adapted to 13 bands on EuroSAT MSI (offline here: small CNN + synthetic EuroSAT)",
				"ResNet-50 with 13 input channels",
				"RGB only (EuroSAT_RGB)",
			},
		}),
	)
}

func (r *Responder) writeCode(answer string) *fakeapi.Reply {
	var calls []fakeapi.ReplyBlock
	for i, name := range []string{"eurosat_synth.py", "swin13.py", "trackio_lite.py", "train.py"} {
		calls = append(calls, call("write", "write", i+1, map[string]any{
			"path": workDir + "/" + name, "content": Script(name),
		}))
	}
	calls = append(calls, call("write", "todo", len(calls)+1, map[string]any{"items": []map[string]string{
		{"content": "Agree on model, dataset and Hugging Face username", "status": "completed"},
		{"content": "Write data, model (13-band expansion) and training code", "status": "in_progress"},
		{"content": "Train with Trackio logging; checkpoint to " + sandbox.RunsDir, "status": "pending"},
		{"content": "Report validation and test metrics", "status": "pending"},
	}}))
	return fakeapi.ToolCalls(fmt.Sprintf("You chose: %q. Writing the code: the data set generator, the 13-band channel expansion, a Trackio logger and the training loop.", oneLine(answer)), calls...)
}

func (r *Responder) prepare() *fakeapi.Reply {
	cmd := fmt.Sprintf("cd %s && /usr/bin/python3 swin13.py && /usr/bin/python3 eurosat_synth.py --out %s --n-per-class %d --seed 0 | tail -n 1",
		workDir, dataDir, r.Sizes.PerClass)
	return fakeapi.ToolCalls("First the numerical check of the 13-band expansion, then the data set.",
		call("prep", "bash", 1, map[string]any{"command": cmd, "timeout_seconds": 300,
			"description": "check the 13-band expansion and generate the data set"}))
}

func (r *Responder) startTraining() *fakeapi.Reply {
	cmd := fmt.Sprintf(`cd %s && RUN=%s/%s-$(date +%%s) && echo "$RUN" > %s && /usr/bin/python3 train.py --data %s --out "$RUN" --epochs %d --lr 3e-3 --batch-size %d --project %s --run-name "$(basename "$RUN")"`,
		workDir, sandbox.RunsDir, runStem, lastRun, dataDir, r.Sizes.Epochs, r.Sizes.BatchSize, trackioP)
	return fakeapi.ToolCalls("The expansion check passed and the data is ready. Starting training in the background; the curves are on the dashboard while it runs.",
		call("train", "bash", 1, map[string]any{"command": cmd, "background": true, "description": "train the 13-band classifier"}))
}

var jobPattern = regexp.MustCompile(`\b(job[0-9]+)\b`)

func jobID(out string) string {
	if m := jobPattern.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return "job1"
}

func (r *Responder) poll(job string) *fakeapi.Reply {
	r.mu.Lock()
	r.polls++
	n := r.polls
	r.mu.Unlock()
	return fakeapi.ToolCalls("",
		call("poll", "jobs", n, map[string]any{"action": "output", "id": job, "wait_seconds": 20, "max_bytes": 4000}))
}

func (r *Responder) readMetrics() *fakeapi.Reply {
	return fakeapi.ToolCalls("Training finished. Reading the metrics the run wrote.",
		call("metrics", "bash", 1, map[string]any{"command": `RUN=$(cat ` + lastRun + `) && echo "run: $RUN" && cat "$RUN/metrics.json"`}))
}

func (r *Responder) writeInfer() *fakeapi.Reply {
	return fakeapi.ToolCalls("Running the best checkpoint over the test split and writing one CSV row per sample.",
		call("infw", "write", 1, map[string]any{"path": workDir + "/infer.py", "content": Script("infer.py")}))
}

func (r *Responder) runInfer() *fakeapi.Reply {
	cmd := `cd ` + workDir + ` && RUN=$(cat ` + lastRun + `) && /usr/bin/python3 infer.py --data ` + dataDir + ` --run "$RUN" --out "$RUN/test_results.csv" | tail -n 1`
	return fakeapi.ToolCalls("",
		call("infer", "bash", 1, map[string]any{"command": cmd, "timeout_seconds": 600, "description": "inference on the test split"}))
}

// lastJSON decodes the last JSON object in out: a one-line object on the
// last line that starts with "{", or a pretty-printed one running to the end.
func lastJSON(out string, v any) error {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.HasPrefix(strings.TrimSpace(lines[i]), "{") {
			continue
		}
		if json.Unmarshal([]byte(lines[i]), v) == nil {
			return nil
		}
		if json.Unmarshal([]byte(strings.Join(lines[i:], "\n")), v) == nil {
			return nil
		}
	}
	return fmt.Errorf("no JSON object in the tool output")
}

func pct(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }

func num(m map[string]any, keys ...string) (float64, bool) {
	for _, k := range keys {
		cur := any(m)
		for _, part := range strings.Split(k, ".") {
			mm, ok := cur.(map[string]any)
			if !ok {
				cur = nil
				break
			}
			cur = mm[part]
		}
		if f, ok := cur.(float64); ok {
			return f, true
		}
	}
	return 0, false
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

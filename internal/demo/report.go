package demo

import (
	"fmt"
	"strings"

	"github.com/mlagent/mlagent/internal/fakeapi"
)

// trainReport writes the agent's training summary from metrics.json as
// the sandbox printed it. Nothing here is a number of the script's own.
func trainReport(out string) *fakeapi.Reply {
	var m map[string]any
	if err := lastJSON(out, &m); err != nil {
		return failed("reading metrics", out)
	}
	get := func(k string) float64 { v, _ := num(m, k); return v }
	str := func(k string) string { s, _ := m[k].(string); return s }
	var b strings.Builder
	fmt.Fprintf(&b, "Training finished. Results of the best epoch (by validation accuracy), read from `%s/metrics.json`:\n\n", str("run_dir"))
	b.WriteString("| Metric | Validation | Test |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| **Accuracy** | **%s** | **%s** |\n", pct(get("val_accuracy")), pct(get("test_accuracy")))
	fmt.Fprintf(&b, "| **F1 (weighted)** | **%s** | **%s** |\n", pct(get("val_f1")), pct(get("test_f1")))
	fmt.Fprintf(&b, "| Loss | %.4f | %.4f |\n\n", get("val_loss"), get("test_loss"))
	fmt.Fprintf(&b, "- **Model**: small CNN whose 3-channel stem was expanded to 13 bands with the Swin recipe (weights replicated across bands, scaled by 3/13; checked numerically)\n")
	fmt.Fprintf(&b, "- **Dataset**: synthetic EuroSAT-like set, 13 bands, 64×64, 10 classes: %.0f train / %.0f validation / %.0f test tiles\n",
		get("n_train"), get("n_val"), get("n_test"))
	fmt.Fprintf(&b, "- **Epochs**: %.0f (best: %.0f), cosine LR schedule, AdamW\n", get("epochs"), get("best_epoch"))
	fmt.Fprintf(&b, "- **Device**: %s; training time %.0f s\n", str("device"), get("train_seconds"))
	fmt.Fprintf(&b, "\nBest model saved to `%s/checkpoint`. Metrics logged to Trackio project `%s`, run `%s` (on the dashboard).\n",
		str("run_dir"), str("project"), str("run_name"))
	b.WriteString("\nWith a GPU and the real EuroSAT MSI, the same steps fine-tune the 13-band Swin-tiny (the original run reached 98.72% test accuracy in ~35 minutes on an A10).")
	return fakeapi.Text(b.String())
}

// inferReport writes the agent's inference summary from inference.json.
func inferReport(out string) *fakeapi.Reply {
	var m struct {
		CSV      string  `json:"csv"`
		Accuracy float64 `json:"accuracy"`
		Correct  int     `json:"correct"`
		Total    int     `json:"total"`
		PerClass []struct {
			Class    string  `json:"class"`
			Samples  int     `json:"samples"`
			Accuracy float64 `json:"accuracy"`
		} `json:"per_class"`
		Confusions []struct {
			True      string `json:"true"`
			Predicted string `json:"predicted"`
			Count     int    `json:"count"`
		} `json:"top_confusions"`
		Throughput struct {
			Device        string  `json:"device"`
			SamplesPerSec float64 `json:"samples_per_sec"`
			MSPerSample   float64 `json:"ms_per_sample"`
		} `json:"throughput"`
	}
	if err := lastJSON(out, &m); err != nil {
		return failed("reading inference results", out)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "**Overall: %s accuracy** (%d / %d correct, %d errors)\n\n", pct(m.Accuracy), m.Correct, m.Total, m.Total-m.Correct)
	b.WriteString("| Class | Samples | Accuracy |\n|---|---|---|\n")
	for i, c := range m.PerClass {
		acc := pct(c.Accuracy)
		if i == 0 {
			acc = "**" + acc + "**"
		}
		fmt.Fprintf(&b, "| %s | %d | %s |\n", c.Class, c.Samples, acc)
	}
	if len(m.Confusions) > 0 {
		b.WriteString("\nMost common confusions:\n")
		for _, c := range m.Confusions {
			fmt.Fprintf(&b, "- **%s** predicted as **%s**: %d\n", c.True, c.Predicted, c.Count)
		}
		listed := 0
		for _, c := range m.Confusions {
			listed += c.Count
		}
		if errs := m.Total - m.Correct; errs > 0 {
			fmt.Fprintf(&b, "\nThese %d pairs account for %d of the %d errors: the classes whose tiles share materials and layouts are the ones that get mixed up.\n", len(m.Confusions), listed, errs)
		}
	}
	fmt.Fprintf(&b, "\nCSV saved to `%s` with per-sample predictions, confidence scores and per-class probabilities.\n", m.CSV)
	fmt.Fprintf(&b, "\nInference throughput: %.0f samples/second (%.3f ms per image) on %s.", m.Throughput.SamplesPerSec, m.Throughput.MSPerSample, m.Throughput.Device)
	return fakeapi.Text(b.String())
}

#!/usr/bin/env python3
"""Run a trained demo checkpoint over a data split and report per-sample results.

Usage:
  infer.py --data DIR --run /data/runs/NAME-TIME --out CSV
           [--split test] [--batch-size 256] [--json PATH] [--top 5]

Needs train.py, swin13.py and trackio_lite.py in the same directory (the
model class and data helpers live in train.py). Reads
RUN/checkpoint/model.pt and RUN/checkpoint/config.json (written by train.py;
the config holds the class names and the train split's per-band mean/std, so
inference normalises exactly as training did).

CSV (one row per sample of the split, in the split's stored order):
  index,true_label,predicted_label,confidence,correct,prob_AnnualCrop,...,prob_SeaLake
  index      position in DIR/<split>.npz
  *_label    class names
  confidence the predicted class's probability
  correct    1 or 0
  prob_<C>   softmax probability per class (6 decimals; each row sums to 1)

inference.json (written to --json, default RUN/inference.json, and printed as
the last stdout line):
  {"split", "run_dir", "csv", "accuracy", "correct", "total",
   "per_class": [{"class", "samples", "correct", "accuracy"}, ...]
                sorted by accuracy, highest first (ties by class name),
   "top_confusions": [{"true", "predicted", "count"}, ...]  (off-diagonal,
                most frequent first, at most --top),
   "throughput": {"device", "batch_size", "samples", "forward_seconds",
                  "samples_per_sec", "ms_per_sample"}}
Throughput times only the model's forward passes (after one warm-up batch),
synchronising CUDA when used.
"""

import argparse
import csv
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

from train import SmallCNN13, confusion, load_split, set_threads, to_tensor  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description="Predict a split with a trained demo checkpoint.")
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True, help="run directory written by train.py")
    p.add_argument("--out", required=True, help="CSV path")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", default=None)
    p.add_argument("--top", type=int, default=5)
    a = p.parse_args(argv)

    set_threads()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = os.path.join(a.run, "checkpoint")
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    classes = cfg["classes"]
    saved = torch.load(os.path.join(ckpt, "model.pt"), map_location=device)
    arch = saved["arch"]
    model = SmallCNN13(in_chans=arch["in_chans"], num_classes=arch["num_classes"],
                       width=arch["width"], dropout=arch.get("dropout", 0.2)).to(device)
    model.load_state_dict(saved["state_dict"])
    model.eval()

    x, y = load_split(a.data, a.split)
    if x.shape[1] != arch["in_chans"]:
        sys.exit(f"data has {x.shape[1]} bands; the checkpoint expects {arch['in_chans']}")
    mean, std = np.array(cfg["mean"]), np.array(cfg["std"])

    probs = []
    fwd = 0.0
    with torch.no_grad():
        # Warm-up so one-time allocation is not counted as throughput.
        model(to_tensor(x[:min(len(y), a.batch_size)], mean, std, device))
        for i in range(0, len(y), a.batch_size):
            xb = to_tensor(x[i:i + a.batch_size], mean, std, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            logits = model(xb)
            if device.type == "cuda":
                torch.cuda.synchronize()
            fwd += time.perf_counter() - t
            probs.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
    prob = np.concatenate(probs)
    pred = prob.argmax(1)
    conf = prob[np.arange(len(pred)), pred]
    correct = pred == y

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "true_label", "predicted_label", "confidence", "correct"]
                   + [f"prob_{c}" for c in classes])
        for i in range(len(y)):
            w.writerow([i, classes[y[i]], classes[pred[i]], f"{conf[i]:.6f}", int(correct[i])]
                       + [f"{v:.6f}" for v in prob[i]])

    cm = confusion(y, pred, len(classes))
    per_class = []
    for c, name in enumerate(classes):
        n = int(cm[c].sum())
        if n == 0:
            continue
        per_class.append({"class": name, "samples": n, "correct": int(cm[c, c]),
                          "accuracy": float(cm[c, c] / n)})
    per_class.sort(key=lambda r: (-r["accuracy"], r["class"]))
    off = [(int(cm[t, q]), classes[t], classes[q])
           for t in range(len(classes)) for q in range(len(classes)) if t != q and cm[t, q] > 0]
    off.sort(key=lambda r: (-r[0], r[1], r[2]))
    total = int(len(y))
    result = {
        "split": a.split,
        "run_dir": os.path.abspath(a.run),
        "csv": os.path.abspath(a.out),
        "accuracy": float(correct.mean()),
        "correct": int(correct.sum()),
        "total": total,
        "per_class": per_class,
        "top_confusions": [{"true": t, "predicted": q, "count": n} for n, t, q in off[:a.top]],
        "throughput": {
            "device": device.type if device.type != "cuda" else torch.cuda.get_device_name(0),
            "batch_size": a.batch_size,
            "samples": total,
            "forward_seconds": fwd,
            "samples_per_sec": total / fwd if fwd > 0 else None,
            "ms_per_sample": 1000 * fwd / total,
        },
    }
    out_json = a.json or os.path.join(a.run, "inference.json")
    with open(out_json, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Train the demo's 13-band land-cover classifier on a EuroSAT-like data set.

Usage:
  train.py --data DIR --out /data/runs/NAME-TIME [--epochs 8] [--lr 3e-3]
           [--batch-size 64] [--project eurosat] [--run-name NAME-TIME]
           [--seed 0] [--weight-decay 0.05] [--log-every 5] [--width 32]

DIR is eurosat_synth.py's output (train/val/test.npz + meta.json; the real
EuroSAT MSI arrays in the same layout work too). The model is SmallCNN13 (below),
whose patch-embedding stem is a 3-channel convolution expanded to 13 bands
with swin13.expand_patch_embedding. Training: per-band normalisation computed
on the train split, random flips/rotations, AdamW, linear warm-up then cosine
decay per step, fp16 autocast on CUDA (fp32 on CPU).

Metrics go to Trackio (the `trackio` package when importable, else
trackio_lite with the same SQLite layout in $TRACKIO_DIR/<project>.db):
  every --log-every steps, at step = global optimizer step:
    train/loss, train/acc (mean over those steps), train/lr
  after every epoch:       val/loss, val/acc, val/f1, epoch,
                           system/samples_per_sec, system/epoch_seconds
  at the end:              test/loss, test/acc, test/f1
The run's config (all arguments, classes, n samples, device) is the Trackio
config.

Files written under --out:
  checkpoint/model.pt     {"state_dict": ..., "arch": {...}} of the best
                          epoch by validation accuracy
  checkpoint/config.json  {"arch", "classes", "bands", "mean", "std",
                           "input_size", "best_epoch", "val_accuracy",
                           "channel_expansion"}
  metrics.json            {"val_accuracy", "val_f1", "val_loss",
                           "test_accuracy", "test_f1", "test_loss",
                           "best_epoch", "epochs", "steps", "seconds",
                           "train_seconds", "n_train", "n_val", "n_test",
                           "device", "threads", "run_dir", "project",
                           "run_name", "tracker", "trackio_db"}
metrics.json's content is also the last stdout line; progress lines before
it start with "epoch". Exit status 0 on success.
"""

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# OpenMP threads spin while they wait; on a few busy shared cores that
# makes two threads three times slower than one. Passive waiting keeps
# the parallel speed-up on an idle machine without that cliff. It must
# be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from torch import nn  # noqa: E402

from swin13 import expand_patch_embedding  # noqa: E402

import trackio_lite  # noqa: E402

try:
    import trackio  # noqa: E402
    TRACKER = "trackio"
except ImportError:
    trackio = trackio_lite
    TRACKER = "trackio_lite"


# The model and data helpers below are also imported by infer.py.
#
# SmallCNN13 stands in for Swin-tiny on two CPU cores but keeps the recipe's
# shape: a patch-embedding stem (kernel 4, stride 4, like Swin's
# patch_size=4) built as a 3-channel convolution and expanded to 13 bands
# with swin13.expand_patch_embedding (weights repeated over bands, scaled by
# 3/13), then three convolution stages, global average pooling and a new
# 10-class head. In a real run the 3-channel stem weights come from a
# pretrained RGB checkpoint; here they are the seeded random initialisation,
# so the expansion ties the 13 bands in three groups at the start and
# training unties them.
ARCH_NAME = "SmallCNN13"


class SmallCNN13(nn.Module):
    def __init__(self, in_chans=13, num_classes=10, width=32, dropout=0.2):
        super().__init__()
        self.arch = {"name": ARCH_NAME, "in_chans": in_chans, "num_classes": num_classes,
                     "width": width, "dropout": dropout}
        rgb_stem = nn.Conv2d(3, width, kernel_size=4, stride=4)
        self.stem = expand_patch_embedding(rgb_stem, in_chans)
        w = width

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            nn.BatchNorm2d(w), nn.GELU(),          # 16x16 tokens from 64x64 input
            block(w, 2 * w), nn.MaxPool2d(2),      # 8x8
            block(2 * w, 4 * w), nn.MaxPool2d(2),  # 4x4
            block(4 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward(self, x):
        return self.head(self.features(self.stem(x)))


def load_split(data_dir, split):
    """x as the stored uint16 numpy array (N, 13, 64, 64), y as int64."""
    with np.load(os.path.join(data_dir, f"{split}.npz")) as z:
        return z["x"], z["y"].astype(np.int64)


def load_meta(data_dir):
    with open(os.path.join(data_dir, "meta.json")) as f:
        return json.load(f)


def band_stats(x, chunk=256):
    """Per-band mean and std over all pixels of x (uint16), in float64."""
    n = 0
    s = np.zeros(x.shape[1])
    s2 = np.zeros(x.shape[1])
    for i in range(0, len(x), chunk):
        b = x[i:i + chunk].astype(np.float64)
        s += b.sum(axis=(0, 2, 3))
        s2 += (b * b).sum(axis=(0, 2, 3))
        n += b.shape[0] * b.shape[2] * b.shape[3]
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 1e-12))
    return mean, std


def to_tensor(x, mean, std, device):
    """Normalise a uint16 batch per band into a float32 tensor on device."""
    t = torch.from_numpy(x.astype(np.float32)).to(device)
    m = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return (t - m) / s


def confusion(y_true, y_pred, k):
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def weighted_f1(cm):
    """Support-weighted F1 from a confusion matrix (rows = true)."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    prec = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    rec = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    return float((f1 * support).sum() / max(support.sum(), 1))


def set_threads():
    """Use the CPUs this process may run on, unless OMP_NUM_THREADS says otherwise."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(n, 16)))
    return torch.get_num_threads()

def parse_args(argv):
    p = argparse.ArgumentParser(description="Train the 13-band demo classifier.")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="run directory, e.g. /data/runs/eurosat-1735689600")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--project", default="eurosat")
    p.add_argument("--run-name", default=None, help="default: the run directory's name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-frac", type=float, default=0.05)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--width", type=int, default=32)
    a = p.parse_args(argv)
    if a.epochs < 1 or a.batch_size < 1 or a.log_every < 1 or not a.lr > 0:
        p.error("--epochs, --batch-size, --log-every and --lr must be positive")
    return a


def augment(x, gen):
    """Random flips and 90-degree rotations, one draw per batch (cheap on CPU)."""
    r = torch.randint(0, 8, (1,), generator=gen).item()
    if r & 1:
        x = x.flip(3)
    if r & 2:
        x = x.flip(2)
    if r & 4:
        x = x.transpose(2, 3)
    return x


def evaluate(model, x, y, mean, std, device, batch_size, amp):
    """Loss, accuracy, weighted F1 and predictions over a whole split."""
    model.eval()
    losses, preds = 0.0, []
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            xb = to_tensor(x[i:i + batch_size], mean, std, device)
            yb = torch.from_numpy(y[i:i + batch_size]).to(device)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
                logits = model(xb)
            losses += F.cross_entropy(logits.float(), yb, reduction="sum").item()
            preds.append(logits.argmax(1).cpu().numpy())
    pred = np.concatenate(preds)
    cm = confusion(y, pred, model.arch["num_classes"])
    return {
        "loss": losses / len(y),
        "acc": float((pred == y).mean()),
        "f1": weighted_f1(cm),
    }


def main(argv=None):
    a = parse_args(argv)
    t0 = time.time()
    torch.manual_seed(a.seed)
    threads = set_threads()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = device.type == "cuda"
    run_dir = os.path.abspath(a.out)
    run_name = a.run_name or os.path.basename(run_dir.rstrip("/"))
    ckpt_dir = os.path.join(run_dir, "checkpoint")
    os.makedirs(ckpt_dir, exist_ok=True)

    meta = load_meta(a.data)
    classes = meta["classes"]
    xtr, ytr = load_split(a.data, "train")
    xva, yva = load_split(a.data, "val")
    xte, yte = load_split(a.data, "test")
    mean, std = band_stats(xtr)

    model = SmallCNN13(in_chans=xtr.shape[1], num_classes=len(classes), width=a.width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    steps_per_epoch = math.ceil(len(ytr) / a.batch_size)
    total = steps_per_epoch * a.epochs
    warm = max(1, int(total * a.warmup_frac))

    def lr_factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    scaler = torch.cuda.amp.GradScaler(enabled=amp)

    config = {
        "data": os.path.abspath(a.data), "run_dir": run_dir, "epochs": a.epochs, "lr": a.lr,
        "batch_size": a.batch_size, "weight_decay": a.weight_decay, "seed": a.seed,
        "model": model.arch, "classes": classes, "n_train": int(len(ytr)),
        "n_val": int(len(yva)), "n_test": int(len(yte)), "device": device.type,
        "threads": threads, "channel_expansion": "3->13, scale 3/13",
    }
    trackio.init(project=a.project, name=run_name, config=config)
    # Trackio and trackio_lite share the location rule.
    db_path = os.path.join(trackio_lite.trackio_dir(), trackio_lite.db_file_name(a.project))

    gen = torch.Generator().manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    step, best, best_epoch = 0, None, 0
    t_train = time.time()
    try:
        for epoch in range(1, a.epochs + 1):
            model.train()
            te = time.time()
            order = rng.permutation(len(ytr))
            win_loss, win_acc, win_n = 0.0, 0.0, 0
            for i in range(0, len(order), a.batch_size):
                idx = np.sort(order[i:i + a.batch_size])
                xb = augment(to_tensor(xtr[idx], mean, std, device), gen)
                yb = torch.from_numpy(ytr[idx]).to(device)
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
                    logits = model(xb)
                    loss = F.cross_entropy(logits.float(), yb, label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                win_loss += loss.item()
                win_acc += (logits.argmax(1) == yb).float().mean().item()
                win_n += 1
                if step % a.log_every == 0 or step == total:
                    trackio.log({"train/loss": win_loss / win_n, "train/acc": win_acc / win_n,
                                 "train/lr": sched.get_last_lr()[0]}, step=step)
                    win_loss, win_acc, win_n = 0.0, 0.0, 0
            secs = time.time() - te
            v = evaluate(model, xva, yva, mean, std, device, 256, amp)
            trackio.log({"val/loss": v["loss"], "val/acc": v["acc"], "val/f1": v["f1"], "epoch": epoch,
                         "system/samples_per_sec": len(ytr) / secs, "system/epoch_seconds": secs},
                        step=step)
            print(f"epoch {epoch}/{a.epochs} step {step} val_loss {v['loss']:.4f} "
                  f"val_acc {v['acc']:.4f} val_f1 {v['f1']:.4f} {secs:.1f}s", flush=True)
            if best is None or (v["acc"], -v["loss"]) > (best["acc"], -best["loss"]):
                best, best_epoch = v, epoch
                torch.save({"state_dict": model.state_dict(), "arch": model.arch},
                           os.path.join(ckpt_dir, "model.pt"))
        train_seconds = time.time() - t_train

        saved = torch.load(os.path.join(ckpt_dir, "model.pt"), map_location=device)
        model.load_state_dict(saved["state_dict"])
        t = evaluate(model, xte, yte, mean, std, device, 256, amp)
        trackio.log({"test/loss": t["loss"], "test/acc": t["acc"], "test/f1": t["f1"]}, step=step)
    finally:
        trackio.finish()

    with open(os.path.join(ckpt_dir, "config.json"), "w") as f:
        json.dump({
            "arch": model.arch,
            "classes": classes,
            "bands": meta.get("bands"),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "input_size": int(xtr.shape[-1]),
            "best_epoch": best_epoch,
            "val_accuracy": best["acc"],
            "channel_expansion": {"source_channels": 3, "in_chans": int(xtr.shape[1]),
                                  "rule": "W13[:, i] = W3[:, i % 3] * 3/13"},
        }, f, indent=2)
    metrics = {
        "val_accuracy": best["acc"], "val_f1": best["f1"], "val_loss": best["loss"],
        "test_accuracy": t["acc"], "test_f1": t["f1"], "test_loss": t["loss"],
        "best_epoch": best_epoch, "epochs": a.epochs, "steps": step,
        "seconds": round(time.time() - t0, 3), "train_seconds": round(train_seconds, 3),
        "n_train": int(len(ytr)), "n_val": int(len(yva)), "n_test": int(len(yte)),
        "device": device.type if device.type != "cuda" else torch.cuda.get_device_name(0),
        "threads": threads, "run_dir": run_dir, "project": a.project, "run_name": run_name,
        "tracker": TRACKER, "trackio_db": db_path,
    }
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Log Ultralytics YOLO training to Trackio, so it shows on the mlagent
dashboard like any other run.

    from ultralytics import YOLO
    from yolo_trackio import add_trackio_callbacks

    model = YOLO("yolo11n.pt")
    add_trackio_callbacks(model, project="pets-yolo", name=run_name)
    model.train(data="data.yaml", epochs=50, imgsz=640, project="/data/runs", name=run_name)

Written for ultralytics 8.3 (YOLO11; the callback names and trainer fields
below are the ones its own W&B and MLflow callbacks use, and have been
stable since 8.0). It reads only these trainer attributes:
    epoch (0-based), epochs, tloss (tensor of mean train losses),
    label_loss_items(tloss, prefix="train") -> {"train/box_loss": ...},
    lr ({"lr/pg0": ...}), metrics ({"metrics/mAP50(B)": ..., "val/box_loss": ...}),
    args (namespace: vars() gives the training config), save_dir, best,
    validator.metrics.names and .box.maps (per-class mAP50-95) at the end.
Everything is logged with step = epoch + 1, so train and val share an axis.
"metrics/..." keys become "val/..." so the dashboard groups them with the
validation losses. Values are plain floats (tensors are converted).

Trackio: `import trackio`; when it is not installed, the `trackio` skill's
trackio_lite.py (same API, same SQLite files) if it is importable.
"""

import math


def _tracker():
    try:
        import trackio
        return trackio
    except ImportError:
        import trackio_lite  # copy it from the trackio skill's scripts/
        return trackio_lite


def _num(v):
    """A plain float from a number, a 0-d tensor or numpy scalar; None otherwise."""
    if hasattr(v, "item"):
        try:
            v = v.item()
        except (ValueError, RuntimeError):
            return None  # a tensor with more than one element
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def rename(key):
    """Ultralytics' metric names, grouped for the dashboard."""
    if key.startswith("metrics/"):
        return "val/" + key[len("metrics/"):]
    return key


def clean(d):
    out = {}
    for k, v in (d or {}).items():
        f = _num(v)
        if f is not None:
            out[rename(str(k))] = f
    return out


def _config(trainer):
    args = getattr(trainer, "args", None)
    try:
        raw = vars(args)
    except TypeError:
        raw = dict(args or {})
    cfg = {}
    for k, v in raw.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            cfg[k] = v
        else:
            cfg[k] = str(v)
    return cfg


class TrackioCallbacks:
    """The callbacks, bound to one tracker; add them with add_trackio_callbacks."""

    def __init__(self, project, name=None, config=None, tracker=None):
        self.project = project
        self.name = name
        self.extra = dict(config or {})
        self.tracker = tracker or _tracker()
        self.started = False

    def on_pretrain_routine_start(self, trainer):
        cfg = _config(trainer)
        cfg.update(self.extra)
        name = self.name or cfg.get("name") or None
        self.tracker.init(project=self.project, name=name, config=cfg, resume="allow")
        self.started = True

    def on_train_epoch_end(self, trainer):
        step = trainer.epoch + 1
        logs = clean(trainer.label_loss_items(trainer.tloss, prefix="train"))
        logs.update(clean(trainer.lr))
        if logs:
            self.tracker.log(logs, step=step)

    def on_fit_epoch_end(self, trainer):
        step = trainer.epoch + 1
        logs = clean(trainer.metrics)
        logs["epoch"] = float(step)
        self.tracker.log(logs, step=step)

    def on_train_end(self, trainer):
        step = trainer.epoch + 1
        final = {}
        validator = getattr(trainer, "validator", None)
        metrics = getattr(validator, "metrics", None)
        names = getattr(metrics, "names", None) or {}
        box = getattr(metrics, "box", None)
        maps = getattr(box, "maps", None)
        if maps is not None and names:
            # maps[i] is class i's mAP50-95; classes absent from val keep the mean.
            for i, name in names.items():
                if i < len(maps):
                    f = _num(maps[i])
                    if f is not None and not math.isnan(f):
                        final[f"test/per_class_mAP50-95/{name}"] = f
        if final:
            self.tracker.log(final, step=step)
        self.tracker.finish()
        self.started = False


def add_trackio_callbacks(model, project, name=None, config=None, tracker=None):
    """Register the Trackio callbacks on an ultralytics YOLO model; returns them."""
    cb = TrackioCallbacks(project, name, config, tracker)
    for event in ("on_pretrain_routine_start", "on_train_epoch_end", "on_fit_epoch_end", "on_train_end"):
        model.add_callback(event, getattr(cb, event))
    return cb

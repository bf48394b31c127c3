#!/usr/bin/env python3
"""Run a trained YOLO model over images and write one CSV row per
detection, like the reference session's test_results.csv:

    image,detection,class_id,class_name,confidence,x1,y1,x2,y2,width,height

(boxes in pixels of the original image; an image with no detection gets one
row with detection = -1 and empty fields, so every image is accounted for).
The last stdout line is a JSON summary: images, detections, per-class counts,
mean confidence, seconds and images per second.

    python3 yolo_predict_csv.py --weights /data/runs/pets-1735689600/weights/best.pt \
        --source /data/datasets/pets/images/val --out /data/runs/pets-1735689600/predictions.csv \
        --conf 0.25 --imgsz 640

Written for ultralytics 8.3: model.predict(source, stream=True, conf=,
imgsz=, device=) yields Results with .path, .names, .orig_shape and .boxes
(.xyxy, .cls, .conf tensors). predict_to_csv takes any object with that
predict() so the CSV code is tested without ultralytics.
"""

import argparse
import csv
import json
import sys
import time

HEADER = ["image", "detection", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2", "width", "height"]


def _list(t):
    """A tensor / numpy array / list as a plain Python list."""
    if hasattr(t, "cpu"):
        t = t.cpu()
    if hasattr(t, "tolist"):
        return t.tolist()
    return list(t)


def rows_of(result):
    """CSV rows for one ultralytics Results object."""
    h, w = result.orig_shape[:2]
    boxes = result.boxes
    xyxy = _list(boxes.xyxy) if boxes is not None else []
    if not xyxy:
        return [[result.path, -1, "", "", "", "", "", "", "", w, h]]
    cls, conf = _list(boxes.cls), _list(boxes.conf)
    rows = []
    for i, (box, c, p) in enumerate(zip(xyxy, cls, conf)):
        c = int(c)
        rows.append([result.path, i, c, result.names[c], f"{p:.6f}",
                     *(f"{v:.2f}" for v in box), w, h])
    return rows


def predict_to_csv(model, source, out, **predict_args):
    start = time.perf_counter()
    images = detections = 0
    per_class, conf_sum = {}, 0.0
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for result in model.predict(source, stream=True, verbose=False, **predict_args):
            images += 1
            for row in rows_of(result):
                w.writerow(row)
                if row[1] != -1:
                    detections += 1
                    per_class[row[3]] = per_class.get(row[3], 0) + 1
                    conf_sum += float(row[4])
    secs = time.perf_counter() - start
    return {
        "csv": out, "images": images, "detections": detections,
        "per_class": dict(sorted(per_class.items())),
        "mean_confidence": round(conf_sum / detections, 6) if detections else None,
        "seconds": round(secs, 3), "images_per_second": round(images / secs, 2) if secs > 0 else None,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description="YOLO predictions to a CSV, one row per detection.")
    p.add_argument("--weights", required=True)
    p.add_argument("--source", required=True, help="image, folder, glob or video")
    p.add_argument("--out", required=True)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--device", default=None, help="0, cpu, ... (default: best available)")
    a = p.parse_args(argv)
    from ultralytics import YOLO  # only the command line needs it
    kw = {"conf": a.conf, "iou": a.iou, "imgsz": a.imgsz}
    if a.device is not None:
        kw["device"] = a.device
    print(json.dumps(predict_to_csv(YOLO(a.weights), a.source, a.out, **kw)))


if __name__ == "__main__":
    sys.exit(main())

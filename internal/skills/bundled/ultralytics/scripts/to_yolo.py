#!/usr/bin/env python3
"""Convert COCO-style or Hugging Face object-detection / segmentation data
to the layout Ultralytics YOLO trains on:

    OUT/images/{train,val}/<name>.<ext>
    OUT/labels/{train,val}/<name>.txt   one object per line:
        detect:  class cx cy w h          (all normalised to 0..1)
        segment: class x1 y1 x2 y2 ...    (polygon, normalised)
    OUT/data.yaml                         path, train, val, names

Sources:
  --coco ANNOTATIONS.json --images DIR [--split train|val]
      COCO json: images (id, file_name, width, height), annotations
      (image_id, category_id, bbox [x, y, w, h] in pixels, segmentation
      polygons, iscrowd), categories (id, name). Category ids are mapped to
      0..n-1 in id order; crowd annotations are skipped.
  --hf DATASET [--hf-split train] [--hf-config NAME]
      a Hub data set (needs the `datasets` package) whose rows hold an image
      and objects {bbox: [[...]], category: [...]} (the layout of
      detection-datasets/*, cppe-5 and similar). --bbox-format says whether
      boxes are coco (x, y, w, h), pascal_voc (x1, y1, x2, y2) or yolo.
Without a val split, --val-fraction of the train images (seeded) become val.
The last stdout line is a JSON summary. Only the standard library is needed
(images are copied byte for byte; sizes are read from PNG/JPEG headers when
the source does not give them).
"""

import argparse
import json
import os
import random
import shutil
import struct
import sys


def image_size(data):
    """(width, height) of PNG, JPEG, GIF or BMP bytes, from the header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        w, h = struct.unpack(">II", data[16:24])
        return w, h
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM":
        w, h = struct.unpack("<ii", data[18:26])
        return w, abs(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg = struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + seg
    raise ValueError("unknown image format (want PNG, JPEG, GIF or BMP)")


def image_ext(data):
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:2] == b"\xff\xd8":
        return ".jpg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if data[:2] == b"BM":
        return ".bmp"
    raise ValueError("unknown image format (want PNG, JPEG, GIF or BMP)")


def _clip(v):
    return min(1.0, max(0.0, v))


def box_line(cls, box, fmt, w, h):
    """One detect label line, or None for a degenerate box."""
    if fmt == "coco":
        x, y, bw, bh = box
        x1, y1, x2, y2 = x, y, x + bw, y + bh
    elif fmt == "pascal_voc":
        x1, y1, x2, y2 = box
    elif fmt == "yolo":
        cx, cy, bw, bh = box
        return f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"
    else:
        raise ValueError(f"bbox format {fmt!r}: want coco, pascal_voc or yolo")
    x1, x2 = _clip(x1 / w), _clip(x2 / w)
    y1, y2 = _clip(y1 / h), _clip(y2 / h)
    if x2 <= x1 or y2 <= y1:
        return None
    return f"{cls} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


def polygon_line(cls, poly, w, h):
    """One segment label line from a flat [x1, y1, x2, y2, ...] pixel polygon."""
    if len(poly) < 6 or len(poly) % 2:
        return None
    pts = " ".join(f"{_clip(poly[i] / w):.6f} {_clip(poly[i + 1] / h):.6f}" for i in range(0, len(poly), 2))
    return f"{cls} {pts}"


def polygon_area(poly):
    """Area of a flat [x1, y1, x2, y2, ...] polygon (shoelace formula)."""
    xs, ys = poly[0::2], poly[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


class Writer:
    """Writes images and label files into the YOLO layout; names stay unique."""

    def __init__(self, out):
        self.out = out
        self.used = set()
        self.counts = {}
        self.objects = {}

    def add(self, split, stem, ext, data, lines):
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "img"
        name, n = stem, 1
        while (split, name) in self.used:
            n += 1
            name = f"{stem}_{n}"
        self.used.add((split, name))
        for sub in ("images", "labels"):
            os.makedirs(os.path.join(self.out, sub, split), exist_ok=True)
        img = os.path.join(self.out, "images", split, name + ext)
        if isinstance(data, str):
            shutil.copyfile(data, img)
        else:
            with open(img, "wb") as f:
                f.write(data)
        with open(os.path.join(self.out, "labels", split, name + ".txt"), "w") as f:
            f.write("".join(line + "\n" for line in lines))
        self.counts[split] = self.counts.get(split, 0) + 1
        self.objects[split] = self.objects.get(split, 0) + len(lines)

    def write_yaml(self, names):
        splits = sorted(self.counts)
        # Quoted (a JSON string is a YAML one): a path with ": " or " #"
        # in it would otherwise be read as something else.
        lines = [f"path: {json.dumps(os.path.abspath(self.out))}"]
        for s in ("train", "val", "test"):
            if s in splits:
                lines.append(f"{s}: images/{s}")
        lines.append("names:")
        lines += [f"  {i}: {json.dumps(n)}" for i, n in enumerate(names)]
        with open(os.path.join(self.out, "data.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")


def split_of(default, val_fraction, rng):
    if default == "train" and val_fraction > 0 and rng.random() < val_fraction:
        return "val"
    return default


def convert_coco(ann_path, images_dir, writer, split="train", task="detect", val_fraction=0.0, seed=0):
    """Convert one COCO json; returns the class names in YOLO order."""
    with open(ann_path) as f:
        coco = json.load(f)
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    by_image = {}
    for a in coco.get("annotations", []):
        by_image.setdefault(a["image_id"], []).append(a)
    rng = random.Random(seed)
    for im in sorted(coco["images"], key=lambda i: i["id"]):
        src = os.path.join(images_dir, im["file_name"])
        w, h = im.get("width"), im.get("height")
        if not w or not h:
            # The whole file: a JPEG's size can come after 64 KiB of EXIF
            # and colour profile.
            with open(src, "rb") as f:
                w, h = image_size(f.read())
        lines = []
        for a in by_image.get(im["id"], []):
            if a.get("iscrowd"):
                continue
            cls = index[a["category_id"]]
            if task == "segment":
                seg = a.get("segmentation")
                if isinstance(seg, list) and seg and isinstance(seg[0], list):
                    # An object in several pieces: keep the piece of largest
                    # area (YOLO labels hold one polygon per object).
                    poly = max(seg, key=polygon_area)
                    line = polygon_line(cls, poly, w, h)
                else:
                    line = None
            else:
                line = box_line(cls, a["bbox"], "coco", w, h)
            if line:
                lines.append(line)
        stem, ext = os.path.splitext(os.path.basename(im["file_name"]))
        writer.add(split_of(split, val_fraction, rng), stem, ext.lower() or ".jpg", src, lines)
    return [c["name"] for c in cats]


def _image_bytes(img):
    """Bytes of an HF image cell: {"bytes", "path"} (parquet/Arrow form),
    a PIL image (datasets' decoded form), or a path."""
    if isinstance(img, dict):
        if img.get("bytes"):
            return img["bytes"]
        if img.get("path"):
            with open(img["path"], "rb") as f:
                return f.read()
        raise ValueError("image cell has neither bytes nor path")
    if isinstance(img, (bytes, bytearray)):
        return bytes(img)
    if isinstance(img, str):
        with open(img, "rb") as f:
            return f.read()
    if hasattr(img, "save"):
        import io
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()
    raise ValueError(f"cannot read an image from {type(img).__name__}")


def convert_hf_rows(rows, names, writer, split="train", bbox_format="coco", val_fraction=0.0, seed=0,
                    image_key="image", objects_key="objects"):
    """Convert rows shaped like an HF detection data set's. Categories may be
    ints (ClassLabel indices into names) or strings (looked up in names)."""
    lookup = {n: i for i, n in enumerate(names)}
    rng = random.Random(seed)
    for n, row in enumerate(rows):
        data = _image_bytes(row[image_key])
        w, h = row.get("width"), row.get("height")
        if not w or not h:
            w, h = image_size(data)
        objs = row.get(objects_key) or {}
        boxes = objs.get("bbox", [])
        cats = objs.get("category", objs.get("label", []))
        if len(boxes) != len(cats):
            raise ValueError(f"row {n}: {len(boxes)} boxes but {len(cats)} categories")
        lines = []
        for box, c in zip(boxes, cats):
            cls = lookup.get(c, -1) if isinstance(c, str) else int(c)
            if not 0 <= cls < len(names):
                raise ValueError(f"row {n}: category {c!r} is not among {len(names)} names")
            line = box_line(cls, box, bbox_format, w, h)
            if line:
                lines.append(line)
        stem = str(row.get("image_id", row.get("id", n)))
        writer.add(split_of(split, val_fraction, rng), stem, image_ext(data), data, lines)
    return names


def _hf_names(ds, objects_key):
    feat = ds.features[objects_key]
    cat = feat["category"] if isinstance(feat, dict) else feat.feature["category"]
    cat = getattr(cat, "feature", cat)
    return list(cat.names)


def main(argv=None):
    p = argparse.ArgumentParser(description="Convert COCO or Hugging Face detection data to YOLO layout.")
    p.add_argument("--out", required=True)
    p.add_argument("--task", choices=["detect", "segment"], default="detect")
    p.add_argument("--coco", action="append", default=[], help="COCO json (repeat with --split for each)")
    p.add_argument("--images", action="append", default=[], help="image folder for each --coco")
    p.add_argument("--split", action="append", default=[], help="train, val or test for each --coco")
    p.add_argument("--hf", help="Hugging Face data set repo id or local folder")
    p.add_argument("--hf-config")
    p.add_argument("--hf-split", action="append", default=[], help="HF split[:yolo split], e.g. validation:val")
    p.add_argument("--bbox-format", default="coco", choices=["coco", "pascal_voc", "yolo"])
    p.add_argument("--val-fraction", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    writer = Writer(args.out)
    names = None
    if args.coco:
        if len(args.images) != len(args.coco):
            p.error("give one --images per --coco")
        splits = args.split or ["train"] * len(args.coco)
        if len(splits) != len(args.coco):
            p.error("give one --split per --coco, or none (all train)")
        for ann, imgs, split in zip(args.coco, args.images, splits):
            got = convert_coco(ann, imgs, writer, split, args.task, args.val_fraction, args.seed)
            if names is not None and got != names:
                p.error(f"{ann}: categories differ from the first file's")
            names = got
    elif args.hf:
        if args.task == "segment":
            p.error("--hf converts boxes only; for masks export COCO polygons first")
        import datasets  # only this path needs it
        for spec in args.hf_split or ["train"]:
            src, _, dst = spec.partition(":")
            dst = dst or ("val" if src in ("validation", "valid") else src)
            ds = datasets.load_dataset(args.hf, args.hf_config, split=src)
            names = names or _hf_names(ds, "objects")
            convert_hf_rows(ds, names, writer, dst, args.bbox_format,
                            args.val_fraction if dst == "train" else 0.0, args.seed)
    else:
        p.error("give --coco or --hf")
    writer.write_yaml(names)
    print(json.dumps({"out": args.out, "names": names, "images": writer.counts, "objects": writer.objects}))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Generate a synthetic EuroSAT-like multispectral data set.

EuroSAT MSI (blanchon/EuroSAT_MSI on the Hub) has 27,000 Sentinel-2 tiles of
64x64 pixels with 13 bands and 10 land-cover classes. The demo cannot download
it (no network, and the tests must run on two CPU cores), so this script builds
a stand-in with the same shape: each tile is a per-pixel mixture of a few
"materials" (water, forest, grass, meadow, crop, soil, roof, asphalt) whose
Sentinel-2 reflectance curves are plausible (values are reflectance x 10000,
like the real uint16 data), laid out with a class-specific spatial texture
(field stripes, tree rows, roads, rivers, houses). Per-tile illumination,
haze, spectral jitter and sensor noise, and classes that share materials
(Pasture/HerbaceousVegetation, Industrial/Residential, AnnualCrop/
PermanentCrop, Highway/River over the same backgrounds) keep it learnable but
not trivial.

Usage:
  eurosat_synth.py --out DIR [--n-per-class N] [--seed S]
                   [--val-frac 0.15] [--test-frac 0.15]

Output, in DIR:
  train.npz, val.npz, test.npz   arrays x: uint16 (N, 13, 64, 64), bands in
                                 EuroSAT's stored order B01-B08, B09, B10,
                                 B11, B12, B8A (meta.json "bands"),
                                 y: int64 (N,) class index
  meta.json                      {"classes": [...10 names...], "bands": [...],
                                  "size": 64, "seed": S, "n_per_class": N,
                                  "splits": {"train": n, "val": n, "test": n},
                                  "seconds": t}
The last stdout line is meta.json's content as one JSON object.
Splits are stratified: every class has the same count in each split.
Only numpy is needed.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

CLASSES = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]

# Spectral order, used to write the material curves below readably.
SPECTRAL_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07",
                  "B08", "B8A", "B09", "B10", "B11", "B12"]
# Stored order: the one of the original EuroSAT MSI GeoTIFFs and of
# blanchon/EuroSAT_MSI's arrays, where B8A comes last (index 9 is the
# cirrus band B10, whose values are ~10-20), so code written against this
# data runs unchanged on the real set.
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07",
         "B08", "B09", "B10", "B11", "B12", "B8A"]
_ORDER = [SPECTRAL_BANDS.index(b) for b in BANDS]

SIZE = 64

# Top-of-atmosphere-like reflectance x 10000 for each material, per band in
# SPECTRAL_BANDS order (B01 coastal, B02 blue, B03 green, B04 red, B05-B07
# red edge, B08/B8A NIR,
# B09 water vapour, B10 cirrus, B11/B12 SWIR). Vegetation: green bump, red
# absorption, red-edge rise, high NIR, SWIR falling with water content.
# Water: dark beyond green. Built surfaces: flat and bright in SWIR.
MATERIALS = {
    "water":   [1250, 1000, 820, 560, 470, 390, 360, 310, 290, 120, 10, 160, 110],
    "forest":  [1150, 860, 720, 460, 820, 1900, 2300, 2420, 2600, 800, 12, 1300, 620],
    "grass":   [1200, 950, 910, 720, 1220, 2350, 2850, 2900, 3150, 1000, 14, 2050, 1120],
    "meadow":  [1230, 990, 960, 860, 1310, 2200, 2620, 2650, 2880, 960, 15, 2300, 1400],
    "crop":    [1200, 940, 1010, 690, 1320, 2800, 3400, 3500, 3700, 1100, 14, 2150, 1100],
    "soil":    [1350, 1200, 1320, 1520, 1760, 1950, 2100, 2220, 2350, 900, 18, 2800, 2300],
    "roof":    [1500, 1420, 1420, 1500, 1600, 1760, 1850, 1900, 2000, 800, 20, 2350, 2050],
    "asphalt": [1350, 1150, 1100, 1100, 1150, 1250, 1300, 1360, 1400, 620, 15, 1650, 1480],
}
MAT_NAMES = list(MATERIALS)
MAT = {name: i for i, name in enumerate(MAT_NAMES)}
SPECTRA = np.array([MATERIALS[m] for m in MAT_NAMES], dtype=np.float32)[:, _ORDER]  # (M, 13)

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def smooth_noise(rng, cells=8):
    """Low-frequency noise in [0, 1] by bilinear upsampling of a coarse grid."""
    g = rng.random((cells + 1, cells + 1), dtype=np.float32)
    pos = np.linspace(0, cells, SIZE, dtype=np.float32)
    i0 = np.minimum(pos.astype(int), cells - 1)
    f = pos - i0
    rows = g[i0] * (1 - f)[:, None] + g[i0 + 1] * f[:, None]          # (SIZE, cells+1)
    out = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
    return out


def rotated(rng):
    """Coordinates along and across a random direction through the tile."""
    a = rng.uniform(0, np.pi)
    u = _XX * np.cos(a) + _YY * np.sin(a)
    v = -_XX * np.sin(a) + _YY * np.cos(a)
    return u, v


def blend(maps):
    """Normalise a dict of non-negative abundance maps to sum to one per pixel."""
    ab = np.zeros((len(MAT_NAMES), SIZE, SIZE), dtype=np.float32)
    for name, m in maps.items():
        ab[MAT[name]] += np.clip(m, 0, None)
    s = ab.sum(0, keepdims=True)
    return ab / np.maximum(s, 1e-6)


def veg_background(rng, kinds=("grass", "crop", "meadow", "forest")):
    """A vegetated background of smooth patches, shared by several classes."""
    maps = {}
    for k in kinds:
        maps[k] = smooth_noise(rng, cells=int(rng.integers(3, 8))) ** 2 * rng.uniform(0.3, 1.0)
    maps["soil"] = smooth_noise(rng, 6) * rng.uniform(0.0, 0.3)
    return maps


def line_mask(rng, width, curvy=0.0):
    """A straight or meandering line of the given width across the tile."""
    u, v = rotated(rng)
    off = rng.uniform(-16, 16)
    if curvy > 0:
        phase = rng.uniform(0, 2 * np.pi)
        freq = rng.uniform(0.04, 0.1)
        off = off + curvy * np.sin(u * freq + phase) + curvy * 0.5 * (smooth_noise(rng, 4) - 0.5) * 4
    d = np.abs(v - off)
    return np.clip(width / 2 + 0.5 - d, 0, 1)


def annual_crop(rng):
    u, v = rotated(rng)
    width = rng.uniform(5, 13)
    idx = np.floor((v + 100) / width).astype(int)
    choice = rng.choice(["crop", "soil", "grass", "meadow"], size=idx.max() + 1, p=[0.45, 0.35, 0.12, 0.08])
    maps = {}
    for k in ("crop", "soil", "grass", "meadow"):
        maps[k] = (choice[idx] == k).astype(np.float32)
    # Cross cuts: fields are rectangles, not endless stripes.
    if rng.random() < 0.6:
        w2 = rng.uniform(12, 30)
        j = np.floor((u + 100) / w2).astype(int)
        flip = rng.random(j.max() + 1) < 0.3
        fm = flip[j]
        maps["soil"] = np.where(fm, maps["crop"], maps["soil"])
        maps["crop"] = np.where(fm, 1 - maps["crop"] - maps["grass"] - maps["meadow"], maps["crop"])
    maps["crop"] = maps["crop"] * (0.7 + 0.3 * smooth_noise(rng, 10))
    return maps


def forest(rng):
    maps = {"forest": 0.75 + 0.5 * smooth_noise(rng, 10)}
    maps["grass"] = np.clip(smooth_noise(rng, 5) - rng.uniform(0.55, 0.9), 0, None) * 2
    maps["meadow"] = np.clip(smooth_noise(rng, 7) - 0.7, 0, None) * rng.uniform(0, 2)
    return maps


def herbaceous(rng):
    return {
        "meadow": 0.5 + smooth_noise(rng, 9),
        "grass": smooth_noise(rng, 6) * rng.uniform(0.3, 1.0),
        "soil": smooth_noise(rng, 12) ** 2 * rng.uniform(0.1, 0.6),
        "forest": np.clip(smooth_noise(rng, 10) - 0.6, 0, None) * rng.uniform(0.5, 2.5),
    }


def pasture(rng):
    return {
        "grass": 0.9 + smooth_noise(rng, 5) * 0.6,
        "meadow": smooth_noise(rng, 7) * rng.uniform(0.1, 0.6),
        "soil": smooth_noise(rng, 4) ** 3 * rng.uniform(0.0, 0.3),
        "forest": np.clip(smooth_noise(rng, 6) - 0.8, 0, None) * rng.uniform(0, 2),
    }


def highway(rng):
    maps = veg_background(rng)
    road = line_mask(rng, rng.uniform(2, 5))
    if rng.random() < 0.3:
        road = np.maximum(road, line_mask(rng, rng.uniform(1.5, 3)))
    for k in maps:
        maps[k] = maps[k] * (1 - road)
    maps["asphalt"] = road * 3
    if rng.random() < 0.3:
        maps["roof"] = np.clip(smooth_noise(rng, 8) - 0.75, 0, None) * 3
    return maps


def river(rng):
    maps = veg_background(rng)
    water = line_mask(rng, rng.uniform(3, 9), curvy=rng.uniform(2, 7))
    for k in maps:
        maps[k] = maps[k] * (1 - water)
    maps["water"] = water * 3
    return maps


def sea_lake(rng):
    maps = {"water": 1.0 + 0.2 * smooth_noise(rng, 6)}
    if rng.random() < 0.5:
        # A shoreline: land on one side of a wavy edge.
        u, v = rotated(rng)
        edge = rng.uniform(10, 32) + 4 * (smooth_noise(rng, 4) - 0.5) * 4
        land = np.clip((v + 32 - (64 - edge)) / 2, 0, 1)
        land = np.clip(land, 0, 1)
        bg = veg_background(rng)
        for k, m in bg.items():
            maps[k] = m * land
        maps["water"] = maps["water"] * (1 - land)
    return maps


def permanent_crop(rng):
    u, v = rotated(rng)
    sp = rng.uniform(3, 6)
    rows = (np.cos(2 * np.pi * v / sp) + 1) / 2
    cols = (np.cos(2 * np.pi * u / rng.uniform(3, 6)) + 1) / 2
    trees = (rows * (0.4 + 0.6 * cols)) ** 2
    under = rng.choice(["soil", "grass", "meadow"], p=[0.5, 0.3, 0.2])
    tree_kind = rng.choice(["forest", "meadow", "crop"], p=[0.5, 0.3, 0.2])
    maps = {tree_kind: trees * rng.uniform(0.8, 1.5), under: 1 - trees * 0.8}
    if rng.random() < 0.4:
        # A neighbouring annual field in part of the tile.
        u2, v2 = rotated(rng)
        part = (v2 > rng.uniform(0, 30)).astype(np.float32)
        for k in list(maps):
            maps[k] = maps[k] * (1 - part)
        maps["crop"] = maps.get("crop", 0) + part * rng.uniform(0.5, 1)
    return maps


def buildings(rng, block_lo, block_hi, fill, green):
    """Rectangular blocks (roofs) on a street grid with green in between."""
    u, v = rotated(rng) if rng.random() < 0.5 else (_XX, _YY)
    bu = rng.uniform(block_lo, block_hi)
    bv = rng.uniform(block_lo, block_hi)
    cu = np.mod(u + rng.uniform(0, 100), bu) / bu
    cv = np.mod(v + rng.uniform(0, 100), bv) / bv
    street = ((cu < 0.15) | (cv < 0.15)).astype(np.float32)
    cell_id = (np.floor((u + 100) / bu) * 131 + np.floor((v + 100) / bv)).astype(int)
    occupied = (rng.random(cell_id.max() + 1) < fill)[cell_id].astype(np.float32)
    # Roof brightness varies per building.
    shade = (0.7 + 0.6 * rng.random(cell_id.max() + 1))[cell_id].astype(np.float32)
    roof = (1 - street) * occupied
    return {
        "roof": roof * shade,
        "asphalt": street + (1 - street) * (1 - occupied) * rng.uniform(0.2, 0.8),
        "grass": (1 - street) * (1 - occupied) * green * (0.5 + smooth_noise(rng, 8)),
        "forest": (1 - street) * (1 - occupied) * green * smooth_noise(rng, 8) * 0.7,
        "soil": smooth_noise(rng, 5) * rng.uniform(0, 0.3),
    }


def industrial(rng):
    return buildings(rng, 10, 24, fill=rng.uniform(0.55, 0.95), green=rng.uniform(0.1, 0.6))


def residential(rng):
    return buildings(rng, 4, 9, fill=rng.uniform(0.45, 0.85), green=rng.uniform(0.5, 1.5))


LAYOUTS = [annual_crop, forest, herbaceous, highway, industrial,
           pasture, permanent_crop, residential, river, sea_lake]


def render(rng, cls):
    """One (13, 64, 64) uint16 tile of class index cls."""
    ab = blend(LAYOUTS[cls](rng))                                        # (M, H, W)
    # Per-tile spectral variability: season, moisture, sensor gain.
    spectra = SPECTRA * rng.normal(1.0, 0.07, size=SPECTRA.shape).astype(np.float32)
    img = np.einsum("mb,mhw->bhw", spectra, ab)
    gain = rng.uniform(0.85, 1.15)
    # Haze (path radiance) in spectral order, strongest in the blue.
    haze = rng.uniform(0, 350) * np.array(
        [1.0, 0.9, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.2, 0.3, 0.0, 0.05, 0.03], dtype=np.float32)[_ORDER]
    img = img * gain + haze[:, None, None]
    img = img * rng.normal(1.0, 0.03, size=img.shape).astype(np.float32)
    img = img + rng.normal(0, 35, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 65535).astype(np.uint16)


def generate(out, n_per_class, seed, val_frac=0.15, test_frac=0.15):
    t0 = time.time()
    os.makedirs(out, exist_ok=True)
    n_test = max(1, int(round(n_per_class * test_frac)))
    n_val = max(1, int(round(n_per_class * val_frac)))
    n_train = n_per_class - n_val - n_test
    if n_train < 1:
        raise SystemExit(f"--n-per-class {n_per_class} too small for the splits")
    counts = {"train": n_train, "val": n_val, "test": n_test}
    root = np.random.SeedSequence(seed)
    # One child seed per (split, class) so a split does not change when
    # another split's size changes.
    children = root.spawn(3 * len(CLASSES))
    meta_splits = {}
    for si, (split, n) in enumerate(counts.items()):
        x = np.empty((n * len(CLASSES), len(BANDS), SIZE, SIZE), dtype=np.uint16)
        y = np.empty(n * len(CLASSES), dtype=np.int64)
        k = 0
        for c in range(len(CLASSES)):
            rng = np.random.default_rng(children[si * len(CLASSES) + c])
            for _ in range(n):
                x[k] = render(rng, c)
                y[k] = c
                k += 1
        perm = np.random.default_rng(children[si * len(CLASSES)]).permutation(len(y))
        np.savez(os.path.join(out, f"{split}.npz"), x=x[perm], y=y[perm])
        meta_splits[split] = int(len(y))
    meta = {
        "classes": CLASSES,
        "bands": BANDS,
        "size": SIZE,
        "seed": seed,
        "n_per_class": n_per_class,
        "splits": meta_splits,
        "seconds": round(time.time() - t0, 3),
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n-per-class", type=int, default=200, help="tiles per class over all splits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-frac", type=float, default=0.15)
    p.add_argument("--test-frac", type=float, default=0.15)
    a = p.parse_args(argv)
    meta = generate(a.out, a.n_per_class, a.seed, a.val_frac, a.test_frac)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Adapt a pretrained 3-channel vision model to 13-band Sentinel-2 input.

The recipe (used for Swin-tiny on EuroSAT MSI): take the pretrained RGB
patch-embedding convolution W of shape (out, 3, k, k) and build the 13-band
weight W13[:, i] = W[:, i % 3] * 3/13, i.e. repeat the RGB filters cyclically
over the bands and scale so that the summed response keeps the magnitude of
the RGB response (13 inputs instead of 3 feed every output).

Exact relation checked by check_expansion(): for an image whose 13 bands
repeat an RGB triple (band i = rgb[i % 3]), band c of the triple appears
n_c = |{i < 13 : i % 3 == c}| times (n = 5, 4, 4), so

    expanded(x13) == original(rgb * s)   with s_c = (3/13) * n_c
                                          = (15/13, 12/13, 12/13),

because the convolution is linear in its input and the bias is copied
unchanged. When in_chans is a multiple of 3 every n_c = in_chans/3, s = 1 and
the expanded layer reproduces the original response exactly; the check
asserts both cases with torch.allclose.

When `transformers` is importable, adapt_swin() builds the real
SwinForImageClassification adaptation: num_channels=13, 10 labels,
image_size=128 (64x64 tiles resized), window_size=8 (divides the 32/16/8
token grids of a 128 input with patch_size=4), with the relative position
bias tables of the pretrained windows interpolated to the new window size.
Without network access it uses a randomly initialised Swin-tiny config
(pretrained weights load only from the local Hub cache).

Usage:
  swin13.py [--in-chans 13] [--swin-model microsoft/swin-tiny-patch4-window7-224]
Prints one JSON object (last stdout line):
  {"ok": bool, "in_chans": 13, "relation": "...", "scale": [..3..],
   "max_abs_err": float, "max_abs_err_multiple_of_3": float,
   "rel_pos_bias": {"ok": true, "shapes": {...}},
   "swin": {"available": bool, "ok": bool, ...details or "reason"}}
Exit status 0 when every check that could run passed, 1 otherwise.
Only torch is required.
"""

import argparse
import json
import math
import os
import sys

# See train.py: passive OpenMP waiting keeps shared CPUs usable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def expand_patch_embedding(conv: nn.Conv2d, in_chans: int = 13) -> nn.Conv2d:
    """Return a copy of conv that takes in_chans inputs.

    The weight for input band i is the original weight for channel
    i % conv.in_channels, scaled by conv.in_channels / in_chans; the bias is
    copied. Works for any source channel count (3 for RGB models).
    """
    if conv.groups != 1:
        raise ValueError("grouped convolutions are not supported")
    src = conv.in_channels
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    idx = torch.arange(in_chans, device=conv.weight.device) % src
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, idx] * (src / in_chans))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def band_scale(src: int, in_chans: int):
    """s_c = (src/in_chans) * #{i < in_chans : i % src == c}."""
    return [(src / in_chans) * sum(1 for i in range(in_chans) if i % src == c) for c in range(src)]


def repeat_bands(rgb: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(B, src, H, W) -> (B, in_chans, H, W) with band i = rgb[:, i % src]."""
    idx = torch.arange(in_chans) % rgb.shape[1]
    return rgb[:, idx]


def _max_err(conv: nn.Conv2d, in_chans: int, gen: torch.Generator) -> float:
    rgb = torch.rand(2, conv.in_channels, 32, 32, generator=gen, dtype=torch.float64)
    big = expand_patch_embedding(conv, in_chans)
    s = torch.tensor(band_scale(conv.in_channels, in_chans), dtype=torch.float64).view(1, -1, 1, 1)
    with torch.no_grad():
        got = big(repeat_bands(rgb, in_chans))
        want = conv(rgb * s)
    if not torch.allclose(got, want, rtol=1e-9, atol=1e-9):
        raise AssertionError(f"expanded response differs: max err {(got - want).abs().max().item()}")
    return float((got - want).abs().max().item())


def check_expansion(in_chans: int = 13) -> dict:
    """Verify expand_patch_embedding numerically (see the module docstring)."""
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 96, kernel_size=4, stride=4).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen, dtype=torch.float64))
    err = _max_err(conv, in_chans, gen)
    mult = 3 * max(1, round(in_chans / 3))
    err3 = _max_err(conv, mult, gen)
    if band_scale(3, mult) != [1.0, 1.0, 1.0]:
        raise AssertionError("scale must be 1 when in_chans is a multiple of 3")
    return {
        "in_chans": in_chans,
        "relation": f"expanded(rgb[i % 3] for i < {in_chans}) == original(rgb * scale)",
        "scale": band_scale(3, in_chans),
        "max_abs_err": err,
        "multiple_of_3": mult,
        "max_abs_err_multiple_of_3": err3,
    }


def resize_rel_pos_bias(table: torch.Tensor, old_window: int, new_window: int) -> torch.Tensor:
    """Bicubically resize a Swin relative position bias table.

    table has shape ((2*old_window-1)**2, heads); the result has shape
    ((2*new_window-1)**2, heads). This keeps pretrained attention biases when
    the window size changes, as Swin's own fine-tuning code does.
    """
    o, n = 2 * old_window - 1, 2 * new_window - 1
    if table.shape[0] != o * o:
        raise ValueError(f"table has {table.shape[0]} rows; want {o * o} for window {old_window}")
    if o == n:
        return table.clone()
    heads = table.shape[1]
    grid = table.T.reshape(1, heads, o, o)
    out = F.interpolate(grid, size=(n, n), mode="bicubic", align_corners=False)
    return out.reshape(heads, n * n).T.contiguous()


def _window_of(table: torch.Tensor) -> int:
    """The window size w of a ((2w-1)**2, heads) relative position bias table."""
    side = int(round(math.sqrt(table.shape[0])))
    if side * side != table.shape[0] or side % 2 == 0:
        raise ValueError(f"not a relative position bias table: {tuple(table.shape)}")
    return (side + 1) // 2


def check_rel_pos_bias() -> dict:
    """Self-check of resize_rel_pos_bias: identity at the same window, right
    shapes for the windows a 128 px Swin-tiny uses (8, and 4 in the last
    stage), and a constant table stays constant."""
    gen = torch.Generator().manual_seed(1)
    t = torch.randn(169, 3, generator=gen, dtype=torch.float64)
    if not torch.equal(resize_rel_pos_bias(t, 7, 7), t):
        raise AssertionError("resize to the same window changed the table")
    shapes = {}
    for w in (4, 8):
        r = resize_rel_pos_bias(t, 7, w)
        if tuple(r.shape) != ((2 * w - 1) ** 2, 3) or _window_of(r) != w:
            raise AssertionError(f"window {w}: shape {tuple(r.shape)}")
        shapes[str(w)] = list(r.shape)
    c = torch.full((169, 3), 0.25, dtype=torch.float64)
    if not torch.allclose(resize_rel_pos_bias(c, 7, 8), torch.full((225, 3), 0.25, dtype=torch.float64)):
        raise AssertionError("a constant bias table did not stay constant")
    return {"ok": True, "shapes": shapes}


def adapt_swin(model, in_chans=13, num_labels=10, image_size=128, window_size=8, id2label=None):
    """Return a new SwinForImageClassification for in_chans-band input.

    model is a (pretrained) 3-channel SwinForImageClassification. The patch
    embedding is expanded with expand_patch_embedding, relative position bias
    tables are resized to each stage's window (the configured one clamped
    to the stage's token grid), the classifier is new.
    """
    from transformers import SwinForImageClassification

    old_cfg = model.config
    cfg = old_cfg.__class__.from_dict(old_cfg.to_dict())
    cfg.num_channels = in_chans
    cfg.image_size = image_size
    cfg.window_size = window_size
    cfg.num_labels = num_labels
    if id2label is None:
        id2label = {i: f"class_{i}" for i in range(num_labels)}
    cfg.id2label = {int(k): v for k, v in id2label.items()}
    cfg.label2id = {v: int(k) for k, v in id2label.items()}
    new = SwinForImageClassification(cfg)

    src = model.state_dict()
    dst = new.state_dict()
    proj = "swin.embeddings.patch_embeddings.projection"
    old_conv = model.swin.embeddings.patch_embeddings.projection
    big = expand_patch_embedding(old_conv, in_chans)
    loaded = {f"{proj}.weight": big.weight.detach(), f"{proj}.bias": big.bias.detach()}
    for k, v in src.items():
        if k in loaded or k.startswith("classifier.") or k.endswith("relative_position_index"):
            continue
        if k.endswith("relative_position_bias_table") and k in dst:
            # Each stage's window is clamped to its token grid (the last
            # stage of a 128 px input has 4x4 tokens, so window 4 there), so
            # take both window sizes from the table shapes, not the config.
            loaded[k] = resize_rel_pos_bias(v, _window_of(v), _window_of(dst[k]))
            continue
        if k in dst and dst[k].shape == v.shape:
            loaded[k] = v
    missing, unexpected = new.load_state_dict(loaded, strict=False)
    bad = [k for k in missing if not (k.startswith("classifier.") or k.endswith("relative_position_index"))]
    if bad or unexpected:
        raise RuntimeError(f"swin adaptation: missing {bad}, unexpected {list(unexpected)}")
    return new


def check_swin(model_id, in_chans=13) -> dict:
    """Run adapt_swin on the real transformers model when it is importable."""
    try:
        import transformers
        from transformers import SwinConfig, SwinForImageClassification
    except Exception as e:  # transformers is optional in the sandbox
        return {"available": False, "reason": f"transformers not importable: {e.__class__.__name__}"}
    try:
        model = SwinForImageClassification.from_pretrained(model_id, local_files_only=True)
        source = model_id
    except Exception:
        # Swin-tiny's architecture with random weights: the adaptation is the
        # same code path, only the starting weights differ.
        cfg = SwinConfig(image_size=224, patch_size=4, num_channels=3, embed_dim=96,
                         depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)
        model = SwinForImageClassification(cfg)
        source = "random-init swin-tiny config (pretrained weights not in the local cache)"
    model.eval()
    new = adapt_swin(model, in_chans=in_chans, num_labels=10, image_size=128, window_size=8).eval()
    # The adapted stem must respond to a band-repeated image like the old
    # stem to the rescaled RGB image.
    rgb = torch.rand(1, 3, 128, 128)
    s = torch.tensor(band_scale(3, in_chans)).view(1, -1, 1, 1)
    with torch.no_grad():
        a = new.swin.embeddings.patch_embeddings.projection(repeat_bands(rgb, in_chans))
        b = model.swin.embeddings.patch_embeddings.projection(rgb * s)
        logits = new(pixel_values=torch.rand(2, in_chans, 128, 128)).logits
    stem_ok = bool(torch.allclose(a, b, atol=1e-5, rtol=1e-4))
    shape_ok = list(logits.shape) == [2, 10]
    return {
        "available": True,
        "ok": stem_ok and shape_ok,
        "transformers": transformers.__version__,
        "source": source,
        "num_channels": new.config.num_channels,
        "image_size": new.config.image_size,
        "window_size": new.config.window_size,
        "patch_size": new.config.patch_size,
        "num_labels": new.config.num_labels,
        "logits_shape": list(logits.shape),
        "stem_max_abs_err": float((a - b).abs().max().item()),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description="Check the 13-band channel expansion.")
    p.add_argument("--in-chans", type=int, default=13)
    p.add_argument("--swin-model", default="microsoft/swin-tiny-patch4-window7-224")
    a = p.parse_args(argv)
    out = {"ok": False}
    try:
        out.update(check_expansion(a.in_chans))
        out["rel_pos_bias"] = check_rel_pos_bias()
        out["ok"] = True
    except AssertionError as e:
        out["error"] = str(e)
    out["swin"] = check_swin(a.swin_model, a.in_chans)
    if out["swin"].get("available") and not out["swin"].get("ok"):
        out["ok"] = False
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

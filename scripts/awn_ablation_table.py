"""Issue 16's ablation table: one row per run of scripts/awn-ablation.sh, from its metrics CSVs.

Writes OUT/README.md (Markdown, pandas) with, per variant, the test accuracy at the last and the best
epoch, the last epoch's training loss and the BN running-statistics magnitudes after the adder layers
(mean and largest |running mean|, mean running variance), first and last epoch. Every number is read
from the CSVs the runs wrote; nothing is typed in.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pandas as pd
import torch

WHAT = {
    "ann20": "no AWN (reference)",
    "awn": "original reading (docs/design.md §4): γ(W−μ)/σ, η on the raw weight, decay on γ, γ₀ = 1",
    "awn-no-gain-decay": "original, no weight decay on γ",
    "awn-eta-normalized": "original, η on the normalized weight's gradient",
    "awn-norm": "weight normalization γW/rms(W) instead of standardization (the default since)",
    "awn-gain-scale": "original, γ₀ = each filter's scale (Ŵ starts as W − μ)",
    "awn-norm-gain4": "weight normalization, γ₀ = 4 (the template scale ann20 learns, where HardTanh saturates)",
}


#: Issue 16's full-recipe runs (30 epochs, whole training set, whole test set, seed 0): label → (metrics CSV,
#: final checkpoint), relative to the repository. The checkpoint gives the BN statistics of a run whose CSV
#: predates those columns, and every AWN run's learned scales.
_FR = "reports/awn-ablation/full-recipe"
FULL_RECIPE = {
    "ANN-20 (no AWN, zoo ann20)": ("models/ann20.metrics.csv", "models/ann20.pt"),
    "ANN-20 AWN standardize, γ₀ = 1 (the zoo's before)": (
        f"{_FR}/ann20-awn-standardize.metrics.csv",
        f"{_FR}/ann20-awn-standardize.pt",
    ),
    "ANN-20 AWN norm, γ₀ = 1": (f"{_FR}/awn-norm.metrics.csv", f"{_FR}/awn-norm.pt"),
    "ANN-20 AWN norm, γ₀ = 4 (zoo ann20-awn)": ("models/ann20-awn.metrics.csv", "models/ann20-awn.pt"),
    "CNN-20 (no AWN, zoo cnn20)": ("models/cnn20.metrics.csv", "models/cnn20.pt"),
    "CNN-20 AWN standardize, γ₀ = 1 (the zoo's before)": (
        f"{_FR}/cnn20-awn-standardize.metrics.csv",
        f"{_FR}/cnn20-awn-standardize.pt",
    ),
    "CNN-20 AWN norm, γ₀ = 4 (zoo cnn20-awn)": ("models/cnn20-awn.metrics.csv", "models/cnn20-awn.pt"),
}


def _arrow(first: float, last: float) -> str:
    return f"{first:.3g} → {last:.3g}"


def table(folder: Path) -> pd.DataFrame:
    """One row per metrics CSV in ``folder``."""
    rows, nan = [], float("nan")
    for path in sorted(folder.glob("*.metrics.csv")):
        m = pd.read_csv(path)
        name = path.name.removesuffix(".metrics.csv")
        last, first = m.iloc[-1], m.iloc[0]
        rows.append({
            "run": name, "variant": WHAT.get(name, name), "epochs": int(last["epoch"]),
            "test acc (last)": last["test_accuracy"], "test acc (best)": m["test_accuracy"].max(),
            "train loss (last)": last["train_loss"],
            "BN mean abs running mean (first → last)": _arrow(first.get("bn_abs_mean", nan), last.get("bn_abs_mean", nan)),
            "BN largest abs running mean (last)": last.get("bn_abs_mean_max", nan),
            "BN mean running var (last)": last.get("bn_var_mean", nan),
            "s / epoch": m["seconds"].median(),
            "used weight rms (last)": _weight_scales(folder / f"{name}.pt").get("used_rms", nan),
            "share of abs(W − X) > 1 (last)": _saturation(folder / f"{name}.pt"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def setup(folder: Path) -> str:
    """The runs' common recipe, read from their finished checkpoints' metadata (weights_only)."""
    import torch

    seen = set()
    for path in sorted(folder.glob("*.pt")):
        meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
        r = meta.get("recipe", {})
        seen.add((r.get("train_subset") or "all", meta.get("accuracy_n"), r.get("epochs"), r.get("seed"), meta.get("dataset")))
    return "; ".join(
        f"{dataset}, training images: first {train}, test images: first {test}, {epochs} epochs (cosine), seed {seed}"
        for train, test, epochs, seed, dataset in sorted(seen, key=str)
    )


@functools.cache
def _load(checkpoint: Path):
    """The checkpoint as a LoadedModel (read once however many columns it feeds), or None if absent."""
    from robustadder.models import load_checkpoint

    return load_checkpoint(checkpoint) if checkpoint.is_file() else None


def _final_bn(checkpoint: Path) -> dict[str, float]:
    from robustadder.train import bn_statistics

    loaded = _load(checkpoint)
    return bn_statistics(loaded.model) if loaded else {}


def _rms(weight: torch.Tensor) -> float:
    """Mean over output filters of each filter's root-mean-square."""
    return float(weight.detach().reshape(weight.shape[0], -1).pow(2).mean(1).sqrt().mean())


def _weight_scales(checkpoint: Path) -> dict[str, float]:
    """Per-filter weight scales of a model's residual-block layers, averaged over the layers.

    ``used_rms``: the rms of the weight the forward uses (AWN: γ·W/rms(W), so about |γ|; without AWN, the
    weight itself), for every model — an adder template's scale against its O(1) inputs is not free
    (|X − W| is not scale-invariant), so AWN models and their no-AWN twins are compared on it directly.
    AWN models also get ``gain`` (mean γ) and ``raw_rms`` (the raw weight's rms): the raw weight's norm sets
    how far a fixed-size (η-scaled) update turns it, so one that grew k-fold learns k times more slowly.
    """
    from robustadder.nn import Adder2d, awn_layers, awn_raw_weight

    loaded = _load(checkpoint)
    if loaded is None:
        return {}
    model = loaded.model
    used = [_rms(m.effective_weight()) if hasattr(m, "effective_weight") else _rms(m.weight)
            for name, m in model.named_modules()
            if name.startswith("layer") and isinstance(m, (Adder2d, torch.nn.Conv2d))]  # fmt: skip
    out = {"used_rms": sum(used) / len(used)} if used else {}
    layers = awn_layers(model)
    if layers:
        raw = [_rms(awn_raw_weight(m)) for m in layers]
        out["gain"] = sum(float(m.awn_gain.detach().mean()) for m in layers) / len(layers)
        out["raw_rms"] = sum(raw) / len(raw)
    return out


def _saturation(checkpoint: Path, images: int = 32, positions: int = 64) -> float | None:
    """Share of the terms |W − X| of the adder layers that exceed 1 on the first test images.

    Why: the official (HardTanh) input gradient clamps W − X to [−1, 1], so this share says in which regime
    a model's surrogate gradient runs — sign-like where it is high, the plain difference W − X where it is
    low — and a template scale AWN holds small moves it from one regime to the other. Per layer, a fixed
    sample of ``positions`` output positions of every image; mean over the layers. None without adder layers
    or without the test data (ROBUSTADDER_DATA).
    """
    import os

    import torch.nn.functional as F

    from robustadder.models import evaluation_images
    from robustadder.nn import Adder2d

    data, loaded = os.environ.get("ROBUSTADDER_DATA"), _load(checkpoint)
    if loaded is None or not data:
        return None
    model = loaded.model.eval()
    x = torch.from_numpy(evaluation_images([loaded], data=data, n=images).x).permute(0, 3, 1, 2).float() / 255
    gen, shares = torch.Generator().manual_seed(0), []

    def hook(layer, inputs, _output) -> None:
        cols = F.unfold(inputs[0], layer.kernel_size, padding=layer.padding, stride=layer.stride)  # N, K, L
        cols = cols[:, :, torch.randint(0, cols.shape[2], (positions,), generator=gen)]
        w = layer.effective_weight().detach().reshape(layer.out_channels, -1)
        shares.append(float(((w[None, :, :, None] - cols[:, None]).abs() > 1).float().mean()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Adder2d)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return sum(shares) / len(shares) if shares else None


def full_recipe(root: Path) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Per-epoch test / train accuracy of the full-recipe runs, and each run's last epoch.

    One per-epoch frame per architecture (the label's first word: ANN-20, CNN-20), runs side by side.
    """
    curves, last = {}, []
    for label, (csv, checkpoint) in FULL_RECIPE.items():
        if not (root / csv).is_file():
            continue
        m = pd.read_csv(root / csv).set_index("epoch")
        curves.setdefault(label.split()[0], {})[(label, "test")] = m["test_accuracy"]
        curves[label.split()[0]][(label, "train")] = m["train_accuracy"]
        row = m.iloc[-1]
        bn = {k: row[k] for k in ("bn_abs_mean", "bn_abs_mean_max", "bn_var_mean") if k in m}
        if not bn and checkpoint:  # the run predates the BN columns: its final checkpoint has the last epoch's
            bn = _final_bn(root / checkpoint)
        scales = _weight_scales(root / checkpoint) if checkpoint else {}
        saturated = _saturation(root / checkpoint) if checkpoint else None
        last.append(  # no time column: the runs trained on different machines
            {
                "run": label,
                "source": csv,
                "epochs done": int(m.index[-1]),
                "test acc (last)": row["test_accuracy"],
                "train acc (last)": row["train_accuracy"],
                "BN mean abs running mean (last)": bn.get("bn_abs_mean"),
                "BN largest abs running mean (last)": bn.get("bn_abs_mean_max"),
                "used weight rms (mean)": scales.get("used_rms"),
                "AWN gain γ (mean)": scales.get("gain"),
                "AWN raw weight rms (mean)": scales.get("raw_rms"),
                "share of abs(W − X) > 1": saturated,
            }
        )
    frames = {}
    for arch, columns in curves.items():
        frame = pd.DataFrame(columns)
        frame.columns = [f"{label}: {kind}" for label, kind in frame.columns]
        frames[arch] = frame.astype(object).where(frame.notna(), None)
    return frames, pd.DataFrame(last)


def main(folder: str) -> None:
    out = Path(folder)
    frame = table(out)
    if frame.empty:
        raise SystemExit(f"no *.metrics.csv in {out}")
    text = ["# AWN ablation (issue 16)", "", "Written by `scripts/awn_ablation_table.py` from the runs' metrics CSVs.", "",
            "## Pilot: one AWN setting changed at a time (`scripts/awn-ablation.sh`)", "",
            f"Setup (from the checkpoints): {setup(out) or 'checkpoints not present'}. ResNet-20 adder, the official",
            "recipe otherwise (SGD, lr 0.1, wd 5e-4, batch 256, η = 0.2). Test accuracy in % of the test images named;",
            "BN columns: the blocks' BN running statistics after the adder layers at the end of each run. The last two",
            "columns (from the run's checkpoint, described under Full recipe): the rms of the weight the adder layers use,",
            "and the share of terms |W − X| above 1, where the official input gradient saturates.", "",
            frame.to_markdown(index=False, floatfmt=".4g"), ""]  # fmt: skip
    if (out / "ann20.metrics.csv").is_file() and "awn-norm" in set(frame["run"]):  # a fact of the pilot, not a measurement
        text += ["Note: the pilot's `ann20` run shared the machine with a CI run for most of its epochs, so its s / epoch is",
                 "inflated; the others ran alone (about 104 s per epoch on the 2-core AVX2 EPYC).", ""]  # fmt: skip
    if "awn-norm-gain4" in set(frame["run"]):  # likewise a fact
        text += ["`awn-norm-gain4` ran later, on the rewritten CPU kernel (issue 18: same arithmetic, other float rounding)",
                 "and beside another training run, so its s / epoch is not comparable either.", ""]  # fmt: skip
    curves, last = full_recipe(Path(__file__).resolve().parents[1])
    if not last.empty:
        text += ["## Full recipe", "",
                 "ResNet-20 with the zoo's recipe: 30 epochs (cosine), the whole CIFAR-10 training set, seed 0, accuracy in",
                 "% of the whole test set (10,000 images: within ±0.9 points at 95 %) after every epoch. Runs trained before",
                 "the BN columns existed have their BN statistics read from the final checkpoint; a run with fewer epochs",
                 "is still training (resumable). Weight columns, from the final checkpoint, per-filter and averaged over the",
                 "residual blocks' layers: the rms of the weight the forward uses (AWN: γ·W/rms(W)), and for AWN models the",
                 "learned gain γ (from γ₀ = 1 unless named) and the raw weight's rms. Adder layers start at rms 1 and take",
                 "η-scaled updates of a fixed size, so a raw weight k times larger turns k times more slowly; conv layers",
                 "start at about 0.05 and take plain SGD steps, which on a scale-free weight shrink as its norm grows. The last",
                 "column: the share of the adder layers' terms |W − X| above 1 on the first 32 test images, where the official",
                 "(HardTanh) input gradient saturates to ±1 (mean over layers; empty for CNNs or without ROBUSTADDER_DATA).",
                 "",
                 last.astype(object).where(last.notna(), None).to_markdown(index=False, floatfmt=".4g", missingval="–"),
                 ""]  # fmt: skip
        for arch, frame in curves.items():
            text += [f"### {arch}, every epoch", "", frame.to_markdown(floatfmt=".2f", missingval="–"), ""]
    (out / "README.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reports/awn-ablation")

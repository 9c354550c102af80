"""Issue 16, step 3's end: put the finished AWN retrains (weight normalization, gains from 4) into the zoo.

    .venv/bin/python scripts/promote_retrain.py            # checks, then moves and rewrites
    .venv/bin/python scripts/promote_retrain.py --dry-run  # says what it would do

Why a script: the swap touches the manifest's checksums and accuracies, the checkpoints and their metrics,
and keeps the standardized-AWN models the zoo shipped before (their checkpoints and metrics move to
``reports/awn-ablation/full-recipe/`` with ``git mv``, so the ablation table keeps its full-recipe rows and
the repository does not grow). Every input is checked before anything moves: a run that is not finished
(``runs/retrain/NAME-g4.pt`` is written only after the last epoch), a run trained with another AWN variant
or recipe, or a manifest entry that is not the standardized model it replaces stops it with one line.
Afterwards: update ``FULL_RECIPE`` in ``scripts/awn_ablation_table.py``, the README's zoo table and AWN
section, and regenerate the reports (``reports/regenerate.sh``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from robustadder.fetch import file_digest  # noqa: E402
from robustadder.models.checkpoint import read_checkpoint_file, unwrap  # noqa: E402

RETRAIN = ROOT / "runs" / "retrain"
ARCHIVE = ROOT / "reports" / "awn-ablation" / "full-recipe"
NAMES = ("ann20-awn", "cnn20-awn")
DESCRIPTION = {
    "ann20-awn": "ResNet-20 AdderNet with AWN (weight norm, gains from 4), trained by this project (30 epochs, official recipe)",
    "cnn20-awn": "ResNet-20 CNN with AWN (weight norm, gains from 4), trained by this project (30 epochs, official recipe)",
}


def _meta(path: Path) -> dict:
    return unwrap(read_checkpoint_file(path), str(path))[1]


def plan() -> list[tuple[str, Path, Path, dict]]:
    """(name, new checkpoint, new metrics, its meta) per model; SystemExit with one line on any problem."""
    zoo = tomllib.loads((ROOT / "models" / "zoo.toml").read_text())["models"]
    reference = _meta(ROOT / "models" / "ann20.pt")["recipe"]
    out = []
    for name in NAMES:
        new, metrics = RETRAIN / f"{name}-g4.pt", RETRAIN / f"{name}-g4.metrics.csv"
        if not new.is_file() or not metrics.is_file():
            raise SystemExit(f"{new.relative_to(ROOT)} is not finished (run scripts/retrain-awn.sh)")
        meta = _meta(new)
        variant = meta.get("awn_variant") or {}
        if variant.get("form") != "norm" or variant.get("gain_init") != "4":
            raise SystemExit(f"{new.name} is not the chosen AWN variant (norm, gains from 4): {variant}")
        for key in ("epochs", "seed", "lr", "batch_size"):
            if meta["recipe"].get(key) != reference.get(key):
                raise SystemExit(f"{new.name}: recipe {key} {meta['recipe'].get(key)} != ann20's {reference.get(key)}")
        if meta.get("accuracy_n") != 10000:
            raise SystemExit(f"{new.name}: accuracy measured on {meta.get('accuracy_n')} images, not the full test set")
        old = ROOT / "models" / f"{name}.pt"
        old_meta = _meta(old)
        if "awn_variant" in old_meta:
            raise SystemExit(f"models/{name}.pt is already a retrained model ({old_meta['awn_variant']})")
        if zoo[name]["sha256"] != file_digest(old):
            raise SystemExit(f"models/{name}.pt does not match its manifest entry")
        out.append((name, new, metrics, meta))
    return out


def rewrite_entry(manifest: str, name: str, sha256: str, accuracy: float) -> str:
    """The manifest with ``[models.NAME]``'s sha256, accuracy and description replaced (comments kept)."""
    start = manifest.index(f"[models.{name}]")
    end = manifest.find("\n[", start + 1)
    end = len(manifest) if end < 0 else end
    section = manifest[start:end]
    section = re.sub(r'^sha256 = ".*"$', f'sha256 = "{sha256}"', section, flags=re.M)
    section = re.sub(r"^accuracy = .*$", f"accuracy = {accuracy}", section, flags=re.M)
    section = re.sub(r'^description = ".*"$', f'description = "{DESCRIPTION[name]}"', section, flags=re.M)
    return manifest[:start] + section + manifest[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    try:
        steps = plan()
    except SystemExit as exc:  # one line, exit 2, nothing moved
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    manifest_path = ROOT / "models" / "zoo.toml"
    manifest = manifest_path.read_text()
    for name, new, _, meta in steps:
        digest = file_digest(new)
        manifest = rewrite_entry(manifest, name, digest, meta["accuracy"])
        print(f"{name}: {meta['accuracy']} % (was the standardized model), sha256 {digest[:12]}…")
    if args.dry_run:
        return
    ARCHIVE.mkdir(parents=True, exist_ok=True)
    for name, new, metrics, _ in steps:
        for suffix in (".pt", ".metrics.csv"):
            archived = (ARCHIVE / f"{name}-standardize{suffix}").relative_to(ROOT)
            subprocess.run(["git", "mv", f"models/{name}{suffix}", str(archived)], cwd=ROOT, check=True)
        shutil.copyfile(new, ROOT / "models" / f"{name}.pt")
        shutil.copyfile(metrics, ROOT / "models" / f"{name}.metrics.csv")
    manifest_path.write_text(manifest)
    subprocess.run(["git", "add", "models"], cwd=ROOT, check=True)
    print("next: FULL_RECIPE in scripts/awn_ablation_table.py, README (zoo table, AWN), reports/regenerate.sh")


if __name__ == "__main__":
    main()

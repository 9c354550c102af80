"""The maintainers' scripts whose numbers land in committed reports compute what their tables say."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from robustadder.models import create_model, save_checkpoint
from robustadder.nn import awn_layers, set_awn_form

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch, raw", [("resnet20_adder_awn", "adder"), ("resnet20_conv_awn", "weight")])
def test_weight_scales_are_the_used_weights_rms_the_mean_gain_and_the_raw_weights_rms(arch, raw, tmp_path):
    """The ablation table's weight columns: rms of the weight the forward uses (about |γ| under AWN), mean γ and
    mean per-filter rms of the raw (not normalized) weight; a model without AWN has the first only."""
    table = _script("awn_ablation_table")
    model = create_model(arch)
    set_awn_form(model, "norm")  # recorded in the checkpoint; standardizing a constant filter would give 0
    layers = awn_layers(model)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.awn_gain.fill_(0.5 if i % 2 else 0.25)  # mean 0.375 over an even number of layers
            weight = getattr(layer, raw)
            weight.fill_(3.0 if i % 2 else 1.0)  # every filter's rms is the constant
    assert len(layers) % 2 == 0
    save_checkpoint(tmp_path / "m.pt", model)
    scales = table._weight_scales(tmp_path / "m.pt")
    assert scales["gain"] == pytest.approx(0.375) and scales["raw_rms"] == pytest.approx(2.0)
    assert scales["used_rms"] == pytest.approx(0.375, rel=1e-4)  # γ·W/rms(W): the constant filters' rms is γ
    plain = create_model(arch.removesuffix("_awn"))
    with torch.no_grad():
        for name, module in plain.named_modules():
            if name.startswith("layer") and hasattr(module, raw):
                getattr(module, raw).fill_(-3.0)
    save_checkpoint(tmp_path / "plain.pt", plain)
    assert table._weight_scales(tmp_path / "plain.pt") == pytest.approx({"used_rms": 3.0})
    assert table._weight_scales(tmp_path / "missing.pt") == {}


def test_saturation_is_the_share_of_adder_terms_beyond_hardtanhs_knee(shared_data, tmp_path, monkeypatch):
    """Templates far from every input saturate every term; a CNN has no adder terms; no data, no number."""
    table = _script("awn_ablation_table")
    model = create_model("resnet20_adder")
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "adder"):
                module.adder.fill_(1e3)
    save_checkpoint(tmp_path / "far.pt", model)
    save_checkpoint(tmp_path / "cnn.pt", create_model("resnet20_conv"))
    monkeypatch.setenv("ROBUSTADDER_DATA", str(shared_data))
    assert table._saturation(tmp_path / "far.pt") == 1.0
    assert table._saturation(tmp_path / "cnn.pt") is None
    monkeypatch.delenv("ROBUSTADDER_DATA")
    assert table._saturation(tmp_path / "far.pt") is None


def test_promote_rewrites_only_the_named_manifest_entry():
    """scripts/promote_retrain.py swaps one model's checksum, accuracy and description and nothing else: the
    manifest's comments and the other entries (which pin other committed files) stay byte for byte."""
    promote = _script("promote_retrain")
    manifest = (
        '# zoo\n\n[models.ann20-awn]\narch = "resnet20_adder_awn"\ndescription = "old"\npath = "ann20-awn.pt"\n'
        'sha256 = "aa"\naccuracy = 81.39\n# a comment kept\n\n[models.ann20]\ndescription = "old"\nsha256 = "bb"\n'
        "accuracy = 87.57\n"
    )
    out = promote.rewrite_entry(manifest, "ann20-awn", "cc", 87.81)
    head, tail = out.split("[models.ann20]\n")
    assert tail == manifest.split("[models.ann20]\n")[1]
    assert 'sha256 = "cc"\naccuracy = 87.81\n# a comment kept\n' in head and '"old"' not in head
    assert f'description = "{promote.DESCRIPTION["ann20-awn"]}"' in head and head.startswith("# zoo\n\n")


FAKE_CLI = r"""#!/usr/bin/env bash
# stands in for robustadder: logs every run, answers dry runs from $PLAN, writes what -o names
echo "$*" >> "$CALLS"
case "$1" in
    --version) echo "robustadder, version 0.0.0" ;;
    sweep)
        if [[ " $* " == *" --dry-run "* ]]; then
            name=$(basename "$2" .toml)
            echo "sweep $name: 12 cells (2 models x 1 settings x 6 attacks/eps) on 100 CIFAR-10 images"
            echo "  done $(sed -n "s/^$name //p" "$PLAN"), skipped 0"
            echo "  compute time of the done cells, as measured when they ran: 3.0 min"
        fi ;;
    check) printf '### Gradient-masking checks: %s\n\n**Verdict:** %s; best 1 %%\n' "$3" \
        "masking suspected: eps — the claim does NOT survive" ;;
    report|compare)  # a Markdown output leads with its answer, as compare's does
        out=""; md=0
        while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; [ "$1" = md ] && md=1; shift; done
        if [ -n "$out" ] && [ $md = 1 ]; then printf -- '- the answer of %s\n\n| table |\n' "$(basename "$out")" > "$out"
        elif [ -n "$out" ]; then echo "rendered" > "$out"; fi ;;
    models) echo "ops" ;;
esac
"""


def _regenerate(tmp_path: Path, readme: str | None, plan: str, zoo: tuple[str, ...] = (), **env: str) -> tuple[str, list[str]]:
    """Run a copy of reports/regenerate.sh in a scratch tree whose robustadder is FAKE_CLI (``zoo``: the zoo's own
    models of that tree, each with a manifest entry and a weights file)."""
    root = Path(__file__).resolve().parents[1]
    tree = tmp_path / "tree"
    shutil.copytree(root / "attacks", tree / "attacks")
    (tree / "reports").mkdir()
    (tree / "models").mkdir()
    (tree / "models" / "zoo.toml").write_text("".join(f'[models.{name}]\npath = "{name}.pt"\n\n' for name in zoo))
    for name in zoo:
        (tree / "models" / f"{name}.pt").write_bytes(b"weights")
    for name in ("regenerate.sh", "reference-models.sh"):
        shutil.copy(root / "reports" / name, tree / "reports" / name)
    if readme is not None:
        (tree / "reports" / "README.md").write_text(readme)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "robustadder").write_text(FAKE_CLI)
    (tmp_path / "bin" / "robustadder").chmod(0o755)
    (tmp_path / "bin" / "python").write_text('#!/usr/bin/env bash\necho "python $*" >> "$CALLS"\necho "| calibrated |"\n')
    (tmp_path / "bin" / "python").chmod(0o755)
    (tmp_path / "plan").write_text(plan)
    calls = tmp_path / "calls"
    run_env = {**os.environ, "BIN": str(tmp_path / "bin"), "PLAN": str(tmp_path / "plan"), "CALLS": str(calls), **env}
    proc = subprocess.run(["bash", "reports/regenerate.sh"], cwd=tree, env=run_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return (tree / "reports" / "README.md").read_text(), calls.read_text().splitlines()


def test_regenerate_render_only_runs_nothing_marks_partial_presets_and_keeps_the_notes(tmp_path):
    """A reference run stopped on purpose (AutoAttack's costliest cells left out) is rendered with
    RENDER_ONLY=1: no sweep, check or compare runs, the preset with missing cells says so in reports/README.md,
    and the hand-written notes after the NOTES line survive the regeneration word for word."""
    notes = "<!-- notes: written by hand, kept by regenerate.sh -->\n\nWhat this run does **not** contain:\n\n- x\n"
    old = "# Reference reports\n\nan old generated table\n\n" + notes
    plan = "paper 30, to run 0\neps-sweep 36, to run 4\nsettings 24, to run 0\n"
    readme, calls = _regenerate(tmp_path, old, plan, RENDER_ONLY="1", N_CHECK="7", N_COMPARE="9")
    ran = [c for c in calls if c.startswith(("check", "compare")) or (c.startswith("sweep") and "--dry-run" not in c)]
    assert ran == []
    assert sum("--dry-run" in c for c in calls) == 3  # one per preset: a dry run loads every model
    assert readme.endswith("\n" + notes) and "an old generated table" not in readme
    rows = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| `") and " preset" in line}
    assert "(**partial**: 36 of 40 cells)" in rows["eps-sweep"]
    assert "partial" not in rows["paper"] and "partial" not in rows["settings"]
    generated = next(line for line in readme.splitlines() if line.startswith("Generated "))
    assert "AVX" in generated  # the vector ISA the kernel was built for, which the compute times depend on


def test_regenerate_runs_the_sweeps_and_writes_no_notes_it_was_not_given(tmp_path):
    """Without RENDER_ONLY the script runs every preset's sweep (the missing cells); a README without the NOTES
    line (or none at all) gets the generated part alone."""
    readme, calls = _regenerate(tmp_path, None, "paper 30, to run 0\neps-sweep 40, to run 0\nsettings 24, to run 0\n",
                                N_CHECK="0", N_COMPARE="0")  # fmt: skip
    swept = [c.split()[1] for c in calls if c.startswith("sweep") and "--dry-run" not in c]
    assert swept == ["reports/paper.toml", "reports/settings.toml", "reports/eps-sweep.toml"]
    # the class-level answer: the seeds of ANN-20 against those of CNN-20 on 1,000 images, then its calibration
    groups = "--group ANN-20=ann20,ann20-seed1,ann20-seed2 --group CNN-20=cnn20,cnn20-seed1,cnn20-seed2 --n 1000"
    classes = [c for c in calls if c.startswith(f"compare {groups}")]
    assert len(classes) == 2 and {"md", "json"} == {c.split("--format ")[1].split()[0] for c in classes}
    assert any(c.startswith("python scripts/fmn_calibration.py --compare reports/compare-ann20-vs-cnn20.json") for c in calls)
    assert "class-ann20-vs-cnn20.{md,json,png}" in readme and "N_CLASS=1000" in readme
    page = next(c for c in calls if c.startswith("report") and "index.html" in c)
    assert page.startswith("report --answer reports/class-ann20-vs-cnn20.json --sweep")  # the answer leads the page
    assert calls.index(page) > calls.index(classes[-1])
    assert "notes" not in readme and "partial" not in readme and readme.startswith("# Reference reports\n")


def test_regenerate_leads_reports_readme_with_the_answer(tmp_path):
    """reports/README.md starts with what a reader came for: the class sentences each class-level answer leads with and
    each model's gradient-masking verdict, above the table of what ran."""
    plan = "paper 30, to run 0\neps-sweep 40, to run 0\nsettings 24, to run 0\n"
    readme, _ = _regenerate(tmp_path, None, plan, zoo=("ann20", "ann32", "cnn32"), N_CHECK="5", N_COMPARE="0")
    head = readme[: readme.index("| part |")]
    assert head.startswith("# Reference reports\n\n## The answer"), head
    for line in ("- the answer of class-ann20-vs-cnn20.md", "- the answer of class-ann32-vs-cnn32.md",
                 "- gradient-masking checks of ann20: masking suspected: eps — the claim does NOT survive"):  # fmt: skip
        assert f"\n{line}\n" in head, (line, head)
    assert "best 1 %" not in head  # the verdict up to its first ';'
    readme, _ = _regenerate(tmp_path / "none", None, plan, N_CHECK="0", N_COMPARE="0", N_CLASS="0")
    assert "## The answer" not in readme  # nothing measured, nothing to say


def test_regenerate_adds_the_depth_32_answer_once_both_models_are_in_the_zoo(tmp_path):
    """Issue 39: with ann32 and cnn32 in the zoo the script also runs the class-level answer at depth 32 (one training
    run per class) and the page leads with both answers and their plot across depths; with one of them missing it
    runs neither (a half answer is no answer)."""
    plan = "paper 30, to run 0\neps-sweep 40, to run 0\nsettings 24, to run 0\n"
    depth32 = "compare --group ANN-32=ann32 --group CNN-32=cnn32 --n 1000"
    readme, calls = _regenerate(tmp_path / "both", None, plan, zoo=("ann20", "ann32", "cnn32"), N_CHECK="0", N_COMPARE="0")
    classes = [c for c in calls if c.startswith(depth32)]
    assert len(classes) == 2 and any("-o reports/class-ann32-vs-cnn32.json" in c for c in classes)
    page = next(c for c in calls if c.startswith("report") and "index.html" in c)
    assert page.startswith("report --answer reports/class-ann20-vs-cnn20.json --answer reports/class-ann32-vs-cnn32.json "
                           "--plot reports/class-depth.png --sweep")  # fmt: skip
    assert "class-ann32-vs-cnn32.{md,json,png}" in readme and "class-depth.png" in readme
    assert "ANN-32 vs CNN-32 (one training run each)" in readme
    readme, calls = _regenerate(tmp_path / "one", None, plan, zoo=("ann32",), N_CHECK="0", N_COMPARE="0")
    assert not any(c.startswith(depth32) for c in calls) and "class-ann32" not in readme
    page = next(c for c in calls if c.startswith("report") and "index.html" in c)
    assert "class-ann32" not in page and "--plot" not in page


def test_regenerate_answers_at_depth_32_with_every_training_seed_both_classes_ship(tmp_path):
    """The depth-32 answer is about architectures once the zoo ships training seeds of both classes: seed K joins
    both groups when ann32-seedK and cnn32-seedK are both in the zoo (a seed of one class alone would compare
    unequal samples of training runs), and reports/README.md says how many runs each class has."""
    plan = "paper 30, to run 0\neps-sweep 40, to run 0\nsettings 24, to run 0\n"
    zoo = ("ann20", "ann32", "cnn32", "ann32-seed1", "cnn32-seed1", "ann32-seed2")
    readme, calls = _regenerate(tmp_path, None, plan, zoo=zoo, N_CHECK="0", N_COMPARE="0")
    depth32 = [c for c in calls if "ANN-32" in c]
    assert len(depth32) == 2
    groups = "compare --group ANN-32=ann32,ann32-seed1 --group CNN-32=cnn32,cnn32-seed1 --n 1000"
    assert all(c.startswith(groups) for c in depth32)
    assert "ANN-32 vs CNN-32 (2 training seeds each)" in readme


def test_fmn_calibration_sets_the_minimal_curve_beside_the_committed_fixed_eps_worst_case(tmp_path, monkeypatch, capsys):
    """scripts/fmn_calibration.py: per model and budget of a committed compare, FMN alone, its envelope with the
    class protocol's fixed-eps attacks and the committed worst case; the envelope is never above either; other
    images are refused with one line."""
    from click.testing import CliRunner

    from robustadder.cli import main as cli

    from helpers import save_tiny_world

    fmn_calibration = _script("fmn_calibration")
    save_tiny_world(tmp_path, n=8, a0=("adder", 0), c0=("conv", 0))
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["compare", "a0.pt", "c0.pt", "--attack", "fgsm", "--eps", "0.02/255,0.2/255", "--n", "8",
                                   "--data", ".", "--store", "s.sqlite", "--json", "-o", "cmp.json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    args = ["--compare", "cmp.json", "--store", "s.sqlite", "--minimal", "fmn:steps=5", "--attack", "fgsm", "--data", "."]
    assert fmn_calibration.main(args) == 0
    table = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    committed = {(m["model"], m["eps_label"]): m["robust_accuracy"] for m in json.loads(Path("cmp.json").read_text())["models"]}
    assert {(r[0].strip("| "), r[1]) for r in table} == set(committed) and len(table) == 4
    values = [[float(c.split()[0]) for c in r[2:5]] for r in table]
    for r, (alone, env, comm) in zip(table, values, strict=True):
        assert comm == committed[(r[0].strip("| "), r[1])] and env <= min(alone, comm) + 1e-9
    assert 0 < max(v for row in values for v in row) and min(v for row in values for v in row) < 100  # informative
    moved = json.loads(Path("cmp.json").read_text())
    moved["settings"]["data_fingerprint"] = "0" * 16
    Path("other.json").write_text(json.dumps(moved))
    assert fmn_calibration.main(["--compare", "other.json", *args[2:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images differ" in err

"""A wheel built from the repository works away from it: zoo, presets and the fast CPU kernel included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the tree (the build must not write into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("robustadder", "models", "attacks"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available in this interpreter")
    assert proc.returncode == 0, proc.stderr
    (found,) = dist.glob("robustadder-*.whl")
    return found


def test_wheel_holds_the_kernel_source_zoo_and_presets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "robustadder/kernels/adder_cpu.cc" in names
    assert "robustadder/_zoo/zoo.toml" in names
    shipped = {p.name for p in (ROOT / "models").glob("*.pt")}
    assert shipped and {f"robustadder/_zoo/{n}" for n in shipped} <= names
    assert {f"robustadder/_presets/{p.name}" for p in (ROOT / "attacks").glob("*.toml")} <= names
    assert not any(n.startswith(("tests/", "reports/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_lists_the_zoo_and_evaluates_on_the_cpu_kernel(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # dependencies (torch, ...) from this interpreter's site-packages, appended after the wheel: a plain
    # path in a .pth file, so the editable install's own .pth (the checkout) is not processed
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    rng = np.random.default_rng(0)
    np.savez(work / "cifar10_test.npz", x=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), y=np.arange(4) % 10)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROBUSTADDER_ZOO")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-m", "robustadder", *args], cwd=work, env=env, capture_output=True, text=True)

    where = subprocess.run([str(python), "-c", "import robustadder; print(robustadder.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(site) and not Path(where).is_relative_to(ROOT)
    code = ("from robustadder.report import preset_path; from robustadder.sweep import load_sweep; "
            "p = preset_path('paper'); print(p); print(len(load_sweep(p).attacks))")  # fmt: skip
    preset = subprocess.run(
        [str(python), "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert Path(preset[0]).is_relative_to(site) and int(preset[1]) > 0
    listing = run("models")
    assert listing.returncode == 0, listing.stderr
    assert "ann20-awn" in listing.stdout and "cnn20" in listing.stdout
    result = run("eval", "--model", "ann20", "--attack", "fgsm", "--eps", "2/255", "--n", "4", "--backend", "cpu",
                 "--data", str(work), "--store", str(work / "s.sqlite"), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["backend"] == "cpu" and out["n"] == 4 and out["variant"] == "ANN"
    assert out["weights_sha256"]


def test_sweep_takes_a_preset_name(shared_data, tmp_path):
    from click.testing import CliRunner

    from robustadder.cli import main

    result = CliRunner().invoke(main, ["sweep", "smoke", "--dry-run", "--data", str(shared_data), "--store",
                                       str(tmp_path / "s.sqlite")])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "smoke" in result.stdout

"""What tests share besides fixtures: paths, tiny models and worlds, external tools, and direct loop
implementations of the adder formulas (docs/design.md §2, written for clarity, not speed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTADDER_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
THIRDPARTY = SHARED / "checkpoints" / "thirdparty-addernet-resnet20-cifar10.pt"


def _geometry(x, w, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = F.pad(x, (padding,) * 4)
    return n, o, kh, kw, xp, (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1


def loop_forward(x, w, stride, padding):
    n, o, kh, kw, xp, ho, wo = _geometry(x, w, stride, padding)
    y = torch.zeros(n, o, ho, wo, dtype=x.dtype)
    for b in range(n):
        for f in range(o):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    y[b, f, i, j] = -(patch - w[f]).abs().sum()
    return y


def loop_grads(x, w, g, stride, padding, mode):
    """(dL/dX in ``mode``, full-precision unscaled dL/dW) by explicit accumulation."""
    n, o, kh, kw, xp, ho, wo = _geometry(x, w, stride, padding)
    gxp = torch.zeros_like(xp)
    gw = torch.zeros_like(w)
    for b in range(n):
        for f in range(o):
            for i in range(ho):
                for j in range(wo):
                    sl = (b, slice(None), slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw))
                    d = w[f] - xp[sl]
                    fd = d.clamp(-1, 1) if mode == "surrogate" else d.sign()
                    gxp[sl] += g[b, f, i, j] * fd
                    gw[f] += (xp[sl] - w[f]) * g[b, f, i, j]
    h, wd = x.shape[2:]
    return gxp[:, :, padding : padding + h, padding : padding + wd], gw


def wait_for_rows(store: Path, minimum: int, timeout: float = 180.0, poll: float = 0.1, proc=None) -> int:
    """Poll a store (read-only, as a concurrent reader) until it holds ``minimum`` sample rows, or the
    writing process ``proc`` (a Popen, optional) has exited."""
    import sqlite3
    import time

    deadline, n = time.time() + timeout, 0
    while time.time() < deadline and n < minimum and (proc is None or proc.poll() is None):
        time.sleep(poll)
        try:
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
                n = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            n = 0
    return n


def tree(path: Path) -> list[str]:
    """Every file below ``path`` (to assert that nothing was written)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def make_tiny(kind: str = "adder", seed: int = 0, n: int = 24):
    """A small trained-looking CIFAR ResNet-8 and images it classifies correctly (labels = its predictions).

    Random weights, BN statistics taken from random images so that BN in eval mode is sane; the labels
    are the model's own clean predictions so that clean accuracy is 100 % and attacks have work to do.
    """
    import numpy as np

    from robustadder.data import ImageSet
    from robustadder.models import CifarResNet
    from robustadder.models.checkpoint import LoadedModel, weights_sha256

    torch.manual_seed(seed)
    model = CifarResNet(8, kind)
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # cumulative average
        for _ in range(3):
            model(torch.rand(32, 3, 32, 32))
    model.eval()
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = ImageSet(x, np.zeros(n, dtype=np.int64), np.arange(100, 100 + n, dtype=np.int64), "tiny")
    with torch.no_grad():
        y = model(data.tensors()[0]).argmax(1).numpy()
    data = ImageSet(x, y.astype(np.int64), data.ids, "tiny")
    state = model.state_dict()
    return LoadedModel(model, f"tiny-{kind}", model.spec, weights_sha256(state), "memory"), data


def save_tiny_world(folder: Path, n: int = 24, **models: tuple[str, int]):
    """Tiny models saved as ``NAME.pt`` (``NAME=(kind, seed)``) and the first one's images as the test set
    (``cifar10_test.npz``), for tests that run the CLI on files. Returns ({NAME: LoadedModel}, data)."""
    import numpy as np

    from robustadder.models import save_checkpoint

    loaded, data = {}, None
    for name, (kind, seed) in models.items():
        loaded[name], own = make_tiny(kind, seed=seed, n=n)
        data = data if data is not None else own
        save_checkpoint(folder / f"{name}.pt", loaded[name].model)
    np.savez(folder / "cifar10_test.npz", x=data.x, y=data.y.astype(np.uint8))
    return loaded, data


# -- external tools (pdflatex, chromium): required in CI, skipped elsewhere when missing ---------------
REQUIRE_TOOLS = os.environ.get("ROBUSTADDER_REQUIRE_TOOLS") == "1"  # set by .ci/run: missing tools fail


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if REQUIRE_TOOLS:
            pytest.fail(f"{tool} is required in CI (installed by .ci/run)")
        pytest.skip(f"{tool} is not installed")
    return path


NEURIPS_PREAMBLE = (  # the NeurIPS text block: 5.5 in (397 pt) wide, one column
    "\\documentclass[10pt]{article}\n\\usepackage[letterpaper,textwidth=5.5in,textheight=9in]{geometry}\n"
    "\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
)


def compile_latex(tmp_path: Path, body: str, name: str = "doc") -> str:
    """pdflatex -halt-on-error on a NeurIPS-sized page; returns the log."""
    pdflatex = need("pdflatex")
    doc = tmp_path / f"{name}.tex"
    doc.write_text(NEURIPS_PREAMBLE + "\\begin{document}\n" + body + "\n\\end{document}\n")
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / f"{name}.pdf").stat().st_size > 1000
    return (tmp_path / f"{name}.log").read_text(errors="replace")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

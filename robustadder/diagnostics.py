"""Gradient-masking diagnostics, run automatically for any model robustadder can load.

These are the checks Carlini et al. (2019) and Athalye et al. (2018) ask of every robustness claim
(docs/design.md §6).

Each check runs its attacks as cells through the engine and store (cells already computed are reused)
and returns pass / warn / fail with the evidence numbers behind the verdict. The thresholds are stated
next to each check; robust accuracies are in percent of all samples, "pp" are percentage points.

1. single-step vs iterative — FGSM and R-FGSM must not beat PGD; per sample, FGSM's successes should be
   PGD's successes too.
2. eps monotonicity — PGD accuracy does not rise with eps, and an (effectively) unbounded attack
   (L∞ eps 0.5) succeeds on every sample.
3. convergence — doubling steps and restarts changes little; the loss trace of the last iterations is flat.
4. white box beats black box — Square (query-based) and transfer from the CNN/ANN counterpart find no
   samples the gradient attacks missed; random noise of the same norm is much weaker than PGD.
5. gradient health — no zero, NaN or infinite input gradients; the attack gradient agrees with a
   finite-difference directional derivative; exact vs surrogate adder gradients: cosine similarity and
   the robust-accuracy gap between attacks that follow each.
6. determinism and batch independence — repeated forwards are identical; predictions do not depend on
   batch size or shuffle (they do with BN in train mode).
7. logits and final iterates — outputs are logits, not probabilities; samples adversarial at some PGD
   iterate but not at the final one (robust accuracy overestimated by reading only the last iterate).

The verdict line says whether the robustness claim survives (no check failed) and which checks fail.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import escape
from .api import evaluate
from .attacks import gradient, make_config
from .data import Dataset, ImageSet
from .engine import Settings, inference_mode, prepare
from .errors import UserError, render_by_format
from .kernels import GRAD_MODES
from .models import (
    LoadedModel,
    Normalization,
    announce,
    as_loaded,
    check_fits,
    evaluation_images,
    load_zoo,
    module_input_shape,
    opened_dataset,
    resolve_model,
)
from .nn import adder_layers, adder_settings
from .store import Store
from .summary import json_safe, mcnemar_exact, percent, robust_flags

TOL_PP = 2.0  # percentage points an attack may deviate before a check warns
HARD_PP = 5.0  # ... before it fails
SIGNIFICANCE = 0.05  # ... and a fail needs a paired difference significant at this level (exact McNemar)
LARGE_EPS = 0.5  # L∞: half the pixel range; every sample must fall


@dataclass
class CheckResult:
    """One check: verdict and the numbers behind it."""

    name: str
    title: str
    verdict: str  # pass | warn | fail | n/a (the evidence cannot discriminate) | skip (could not run)
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckReport:
    """All checks of one model."""

    model: str
    arch: str
    weights_sha256: str
    n: int
    eps: float
    settings: dict[str, Any]
    results: list[CheckResult]
    best_robust_accuracy: float
    #: how eps was chosen (``auto``: PGD's robust share of the clean-correct samples per budget)
    eps_selection: dict[str, Any] = field(default_factory=dict)
    #: PGD robust accuracy at the conventional 8/255, reported beside the informative eps
    reference: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if r.verdict == "fail"]

    @property
    def warned(self) -> list[str]:
        return [r.name for r in self.results if r.verdict == "warn"]

    @property
    def verdict(self) -> str:
        """One line: does the robustness claim survive, and which check fails."""
        eps = f"{self.eps * 255:.4g}/255"
        base = (
            f"best robust accuracy (per-sample worst case over every attack run) {self.best_robust_accuracy:.2f} % at eps {eps}"
        )
        if self.failed:
            return f"masking suspected: {', '.join(self.failed)} — the robustness claim does NOT survive; {base}"
        if not self.best_robust_accuracy > 0:
            return f"not robust at eps {eps}: no sample survives, so there is no robustness to question; {base}"
        warn = f", with warnings ({', '.join(self.warned)})" if self.warned else ""
        return f"robust at eps {eps}, no masking detected{warn}: the robustness claim survives; {base}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckReport:
        """Rebuild a stored report (the store keeps the JSON form)."""
        fields_ = {k: data[k] for k in ("model", "arch", "weights_sha256", "n", "eps", "settings")}
        results = [CheckResult(**r) for r in data["results"]]
        best = data.get("best_robust_accuracy")
        return cls(**fields_, results=results, best_robust_accuracy=float("nan") if best is None else best,
                   eps_selection=data.get("eps_selection") or {}, reference=data.get("reference") or {})  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes null)."""
        data = asdict(self)
        data["verdict"] = self.verdict
        data["failed"], data["warned"] = self.failed, self.warned
        return json_safe(data)

    def to_markdown(self) -> str:
        """Markdown section: the verdict first (the answer a reader came for), then the table of checks and evidence."""
        md = escape.markdown
        rows = [{"check": md(r.title), "verdict": r.verdict.upper(), "evidence": md(r.summary)} for r in self.results]
        table = pd.DataFrame(rows).to_markdown(index=False)
        st = self.settings
        return (
            f"### Gradient-masking checks: {md(self.model)}\n\n**Verdict:** {md(self.verdict)}\n\n"
            f"{md(self.arch)}, weights {self.weights_sha256[:12]}, {self.n} test images, eps {self.eps * 255:.4g}/255, "
            f"BN {st['bn']}, attack gradient {st['grad']}, backend {md(st['backend'])}.{md(self._eps_note())}\n\n{table}\n"
        )

    def to_latex(self) -> str:
        """A LaTeX table (booktabs) of the checks with their verdicts and evidence, captioned with the verdict."""
        from .report.latex import latex_float

        tex = escape.latex
        rows = [{"check": r.title, "verdict": r.verdict.upper(), "evidence": r.summary} for r in self.results]
        table = escape.frame_text(pd.DataFrame(rows), tex).style.hide(axis="index")
        body = table.to_latex(hrules=True, column_format="llp{0.55\\linewidth}")
        caption = (f"Gradient-masking checks of {self.model} ({self.arch}, weights {self.weights_sha256[:12]}), {self.n} test "
                   f"images, eps {self.eps * 255:.4g}/255.{self._eps_note()} Verdict: {self.verdict}")  # fmt: skip
        return latex_float("check", tex(caption), body)

    def render(self, fmt: str) -> str:
        """``md``, ``json``, ``latex`` or ``html`` (the section of a report page)."""
        return render_by_format(fmt, {"md": self.to_markdown, "json": lambda: json.dumps(self.to_json()),
                                      "latex": self.to_latex, "html": self.to_html})  # fmt: skip

    def _eps_note(self) -> str:
        """How eps was chosen, and the conventional 8/255 beside it."""
        note = ""
        sel = self.eps_selection
        if sel.get("robust_share_by_eps"):
            shares = ", ".join(f"{k} {v:.0f} %" for k, v in sel["robust_share_by_eps"].items())
            note += f" eps chosen by rule ({sel['rule']}); PGD robust share of clean-correct samples: {shares}."
        if self.reference:
            ref = self.reference
            note += f" At {ref['eps'] * 255:.4g}/255, {ref['attack']} leaves {ref['robust_accuracy']:.2f} % robust."
        return note

    @property
    def anchor(self) -> str:
        """Id of this report's section on an HTML page (unique per weights)."""
        return f"check-{self.weights_sha256[:12]}"

    def to_html(self) -> str:
        """HTML section (for the report page)."""
        colour = {"pass": "#2a7", "warn": "#c80", "fail": "#c22", "skip": "#888", "n/a": "#888"}
        rows = "".join(
            f"<tr><td>{escape.html(r.title)}</td><td style='color:{colour[r.verdict]};font-weight:bold'>{r.verdict.upper()}"
            f"</td><td style='text-align:left;white-space:normal'>{escape.html(r.summary)}</td></tr>"
            for r in self.results
        )
        return (
            f"<section><h2 id='{self.anchor}'>Gradient-masking checks: {escape.html(self.model)}</h2>"
            f"<p><b>Verdict:</b> {escape.html(self.verdict)}</p>"
            f"<p>{escape.html(self.arch)}, {self.n} test images, eps {self.eps * 255:.4g}/255</p>"
            f"<table class='results'><tr><th>check</th><th>verdict</th><th>evidence</th></tr>{rows}</table></section>"
        )


def _fooled(frame: pd.DataFrame) -> pd.Series:
    """Per sample id: clean-correct and fooled."""
    return (frame["clean_correct"] & ~frame["adv_correct"]).set_axis(frame["sample_id"].to_numpy())


def _robust(frame: pd.DataFrame) -> float:
    return 100.0 * float(robust_flags(frame).mean())


def _paired_p(stronger: pd.DataFrame, weaker: pd.DataFrame) -> float:
    """Exact McNemar p-value of two cells' per-sample robust outcomes on the same samples (paired by sample id).

    A check fails on an attack that beats another only when the difference is more than sampling noise: with
    200 images one sample is 0.5 points, with 12 it is 8.3, and a difference of a sample or two is no evidence of
    masking (the check then warns and says so).
    """
    a = robust_flags(stronger).set_axis(stronger["sample_id"].to_numpy())
    b = robust_flags(weaker).set_axis(weaker["sample_id"].to_numpy()).reindex(a.index, fill_value=False)
    return float(mcnemar_exact(a.to_numpy(), b.to_numpy())["p_value"])


def _noise_note(p: float | None) -> str:
    """What a check adds where its test ran and found the difference within sampling noise (else nothing)."""
    if p is None or p < SIGNIFICANCE:
        return ""
    return f"; not significant (paired McNemar p = {p:.2g} ≥ {SIGNIFICANCE}): within sampling noise, so a warning, not a fail"


def _asr(frame: pd.DataFrame) -> float:
    clean = frame["clean_correct"]
    return 100.0 * float((clean & ~frame["adv_correct"]).sum() / max(1, clean.sum()))


def counterpart(loaded: LoadedModel) -> str | None:
    """A zoo model of the other kind (conv for adder and back), same family, AWN and classes, with weights present."""
    if loaded.arch.kind not in ("adder", "conv"):
        return None
    want = "conv" if loaded.arch.kind == "adder" else "adder"
    for name, entry in load_zoo().items():
        spec = entry.spec
        same = spec.family == loaded.arch.family and spec.awn == loaded.arch.awn and spec.num_classes == loaded.arch.num_classes
        if spec.kind == want and same and entry.present():
            if entry.sha256 and name != loaded.name:
                return name
    return None


class _Runner:
    """Runs attack cells for one model with fixed data, store and settings; caches frames by label."""

    def __init__(self, loaded: LoadedModel, data: ImageSet, store: Store, settings: Settings, progress: bool):
        self.loaded, self.data, self.store, self.settings, self.progress = loaded, data, store, settings, progress

    def run(self, attack: str, eps: Any = None, **overrides) -> pd.DataFrame:
        settings = Settings.of(self.settings, **overrides)
        return evaluate(self.loaded, [attack], eps=eps, data=self.data, store=self.store, settings=settings,
                        progress=self.progress).frame  # fmt: skip


def run_checks(
    model: Any,
    *,
    n: int = 200,
    eps: Any = "auto",
    data: str | os.PathLike | ImageSet | None = None,
    store: str | os.PathLike | Store | None = None,
    steps: int = 20,
    square_queries: int = 1000,
    source: str | None = None,
    settings: Settings | None = None,
    normalization: Normalization = None,
    dataset: str | os.PathLike | Dataset | None = None,
    progress: bool = True,
    **overrides: Any,
) -> CheckReport:
    """Run every check on a model; see the module docstring for what each one tests.

    ``dataset`` / ``data`` as for :func:`robustadder.evaluate` (default: the dataset the model was trained
    on, else CIFAR-10); ``settings`` and keyword overrides of its fields as there (the checks compare float32
    with float64 and shuffle the order themselves: ``dtype`` and ``shuffle`` stay at their defaults).
    """
    settings = Settings.of(settings, **overrides)
    if settings.dtype != "float32" or settings.shuffle:
        raise UserError("check runs in float32 and the original order (it compares float64 and shuffled orders itself)")
    settings.validate()
    auto = isinstance(eps, str) and eps.strip().lower() == "auto"
    eps_value = None if auto else make_config("pgd", eps=eps).eps
    if n is not None and n < 2:  # batch independence needs two batch layouts; shares of one image say nothing
        raise UserError(f"check needs at least 2 test images, not {n} (use --n 100 or more for evidence)")
    dataset = opened_dataset(dataset)
    loaded = as_loaded(model, normalization=normalization, input_shape=module_input_shape(dataset, data))
    images = evaluation_images([loaded], dataset, data, n)
    if len(images) < 2:
        raise UserError(f"check needs at least 2 test images, not {len(images)} (use --n 100 or more for evidence)")
    announce(loaded)
    src_name = source or counterpart(loaded)
    src_reason = "" if src_name else "no counterpart model is available (pass --source)"
    if src_name:
        try:
            check_fits(resolve_model(src_name), images)  # a transfer source attacks the same images
        except UserError as exc:
            src_name, src_reason = None, f"source {src_name}: {exc}"
            if source:
                raise
    own = not isinstance(store, Store)
    db = Store.open(store) if own else store
    try:
        if db.run_id is None:
            db.start_run("check", settings.resolved()["device"])
        r = _Runner(loaded, images, db, settings, progress)
        if auto:
            eps_value, selection = informative_eps(r, steps)
        else:
            selection = {"rule": "given"}
        results, frames = _all_checks(r, eps_value, steps, square_queries, src_name, src_reason)
        ref_frame = r.run(f"pgd:steps={steps}", REFERENCE_EPS)
        reference = {"eps": REFERENCE_EPS, "attack": f"PGD-{steps}", "robust_accuracy": _robust(ref_frame)}
        flags = None
        for label, f in frames.items():  # the claim is at eps: the eps ladder's other budgets do not count
            if label != "clean" and np.isclose(f["eps"].iloc[0], eps_value):
                fl = robust_flags(f).set_axis(f["sample_id"].to_numpy())
                flags = fl if flags is None else flags & fl.reindex(flags.index, fill_value=False)
        best = 100.0 * float(flags.mean()) if flags is not None else float("nan")
        report = CheckReport(loaded.name, loaded.arch.name, loaded.weights_sha256, len(images), eps_value,
                             settings.resolved(), results, best, selection, reference)  # fmt: skip
        db.add_check(report.weights_sha256, report.model, report.to_json())
    finally:
        if own:
            db.close()
    return report


#: budgets ``--eps auto`` tries, smallest first (×1/255); informative = PGD leaves this share (%) of the
#: clean-correct samples robust: at 0 % every comparison of attacks passes trivially, at 100 % too
CHECK_EPS_GRID = (0.5, 1, 2, 4, 8, 16)
INFORMATIVE_SHARE = (20.0, 80.0)
REFERENCE_EPS = 8 / 255


def informative_eps(r: _Runner, steps: int) -> tuple[float, dict[str, Any]]:
    """The smallest budget of the grid where PGD leaves 20–80 % of the clean-correct samples robust.

    Without one (the share jumps across the range between two budgets, or never enters it), the budget
    whose share is closest to 50 %. The PGD cells are the ones the eps-monotonicity check reuses.
    """
    shares: dict[str, float] = {}
    for k in CHECK_EPS_GRID:
        frame = r.run(f"pgd:steps={steps}", k / 255)
        clean = int(frame["clean_correct"].sum())
        share = 100.0 * int(robust_flags(frame).sum()) / clean if clean else float("nan")
        shares[f"{k:g}/255"] = share
        if INFORMATIVE_SHARE[0] <= share <= INFORMATIVE_SHARE[1]:
            return k / 255, {"rule": "smallest eps with PGD robust share in 20-80 %", "robust_share_by_eps": shares}
        if share < INFORMATIVE_SHARE[0]:
            break  # larger budgets leave even fewer
    finite = {k: v for k, v in shares.items() if v == v}
    pick = min(finite, key=lambda k: abs(finite[k] - 50.0)) if finite else f"{CHECK_EPS_GRID[0]:g}/255"
    return float(pick.split("/")[0]) / 255, {"rule": "no eps in 20-80 %: closest to 50 %", "robust_share_by_eps": shares}


#: checks that compare attacks on the samples PGD leaves robust: with none left they cannot discriminate
_NEED_SURVIVORS = ("single-step", "convergence", "black-box")


def _all_checks(
    r: _Runner, eps: float, steps: int, queries: int, source: str | None, source_reason: str
) -> tuple[list[CheckResult], dict[str, pd.DataFrame]]:
    frames: dict[str, pd.DataFrame] = {}

    def cell(label: str, attack: str, e: Any = eps, **overrides) -> pd.DataFrame:
        if label not in frames:
            frames[label] = r.run(attack, e, **overrides)
        return frames[label]

    frames["clean"] = r.run("none")
    pgd = cell("pgd", f"pgd:steps={steps}")
    pgd2 = cell("pgd2", f"pgd:steps={2 * steps}")
    fgsm = cell("fgsm", "fgsm")
    rfgsm = cell("rfgsm", "rfgsm:steps=5")
    checks = [
        ("single-step", "single-step attacks do not beat iterative ones", lambda: _check_single_step(fgsm, rfgsm, pgd, steps)),
        ("eps-monotonic", "accuracy falls with eps, to ~0 at large eps", lambda: _check_eps(r, cell, eps, steps)),
        ("convergence", "more steps and restarts change little", lambda: _check_convergence(r, cell, pgd, pgd2, eps, steps)),
        ("black-box", "white box beats black box and noise",
         lambda: _check_black_box(r, cell, frames, pgd, eps, queries, source, source_reason, steps)),
        ("gradient-health", "gradients are non-zero, finite and match finite differences",
         lambda: _check_gradients(r, cell, eps, steps)),
        ("determinism", "deterministic and independent of batch composition", lambda: _check_determinism(r)),
        ("logits-iterates", "logits, and final iterate vs ever adversarial", lambda: _check_logits_and_iterates(r, eps, steps)),
        ("numerical-stability", "decisions do not depend on float32 rounding",
         lambda: _check_precision(r, cell, pgd, eps, steps)),
    ]  # fmt: skip
    results = []
    pgd_robust = _robust(pgd)
    for name, title, run in checks:
        try:
            result = run()
        except UserError as exc:  # e.g. an attack that cannot run under these settings: say so, go on
            result = CheckResult(name, title, "skip", f"not run: {exc}")
        if name in _NEED_SURVIVORS and result.verdict in ("pass", "warn") and not pgd_robust > 0:
            result.verdict = "n/a"
            result.summary = (
                f"cannot discriminate: PGD-{steps} leaves no sample robust at eps {eps * 255:.4g}/255, so no other "
                f"attack can find more (choose a smaller --eps, or --eps auto); {result.summary}"
            )
        results.append(result)
    return results, frames


# -- 1 ------------------------------------------------------------------------------------------------------
def _check_single_step(fgsm, rfgsm, pgd, steps) -> CheckResult:
    acc = {"FGSM": _robust(fgsm), "R-FGSM-5": _robust(rfgsm), f"PGD-{steps}": _robust(pgd)}
    p_fooled = _fooled(pgd)
    outside = {}
    for name, frame in (("FGSM", fgsm), ("R-FGSM-5", rfgsm)):
        f = _fooled(frame)
        outside[name] = 100.0 * float((f & ~p_fooled.reindex(f.index, fill_value=False)).mean())
    beats = [k for k in ("FGSM", "R-FGSM-5") if acc[k] < acc[f"PGD-{steps}"] - TOL_PP]
    # the test runs only on an attack that beat PGD by the threshold (None: no test ran)
    p = min((_paired_p(frame, pgd) for k, frame in (("FGSM", fgsm), ("R-FGSM-5", rfgsm)) if k in beats), default=None)
    verdict = "fail" if p is not None and p < SIGNIFICANCE else "warn" if beats or max(outside.values()) > TOL_PP else "pass"
    summary = (
        f"robust accuracy FGSM {percent(acc['FGSM'])}, R-FGSM-5 {percent(acc['R-FGSM-5'])}, "
        f"PGD-{steps} {percent(acc[f'PGD-{steps}'])}; "
        f"samples fooled by FGSM but not PGD {outside['FGSM']:.2f} %, by R-FGSM but not PGD {outside['R-FGSM-5']:.2f} % "
        f"(tolerance {TOL_PP} pp)" + (f"; {', '.join(beats)} beat(s) PGD" if beats else "")
        + _noise_note(p)
    )
    return CheckResult("single-step", "single-step attacks do not beat iterative ones", verdict, summary,
                       {"robust_accuracy": acc, "fooled_outside_pgd": outside, "p_value": p})  # fmt: skip


# -- 2 ------------------------------------------------------------------------------------------------------
EPS_LADDER = (1, 2, 4, 8, 16, 32, 64, 127.5)


def _check_eps(r, cell, eps, steps) -> CheckResult:
    curve = {}
    for k in EPS_LADDER:
        e = k / 255
        frame = cell(f"eps{k}", f"pgd:steps={steps}", e)  # step eps/4: every budget is reachable
        curve[f"{k:g}/255"] = _robust(frame)
    values = list(curve.values())
    rises = [(list(curve)[i], list(curve)[i + 1]) for i in range(len(values) - 1) if values[i + 1] > values[i] + TOL_PP]
    final = values[-1]
    verdict = "fail" if rises or final > 1.0 else "pass"
    summary = (
        "PGD robust accuracy by eps: " + ", ".join(f"{k} {v:.1f} %" for k, v in curve.items())
        + (f"; rises between {rises}" if rises else "; non-increasing")
        + (f"; at eps {LARGE_EPS} {final:.2f} % survive (an unbounded attack must reach 0 %)" if final > 1.0
           else f"; reaches ~0 % at eps {LARGE_EPS}")
    )  # fmt: skip
    return CheckResult("eps-monotonic", "accuracy falls with eps, to ~0 at large eps", verdict, summary, {"curve": curve})


# -- 3 ------------------------------------------------------------------------------------------------------
def _loss_trace(r: _Runner, eps: float, steps: int, limit: int = 128) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """Per PGD step on up to ``limit`` samples: mean CE and share still correct; ever/final adversarial flags."""
    data = r.data.take(slice(0, min(limit, len(r.data))))
    model = prepare(r.loaded, r.settings)
    x, y = data.tensors()
    x, y = x.to(r.settings.device, r.settings.torch_dtype), y.to(r.settings.device)
    trace: list[float] = []
    correct: list[float] = []
    ever = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def on_step(_restart, _step, x_adv):
        with torch.no_grad():
            logits = model(x_adv)
            trace.append(float(F.cross_entropy(logits, y)))
            wrong = logits.argmax(1) != y
            correct.append(100.0 * float((~wrong & clean_ok).float().mean()))
            ever.logical_or_(wrong)

    mode = r.settings.grad if r.settings.grad in GRAD_MODES else "surrogate"  # the trace follows one gradient
    with inference_mode(model, r.settings.bn), adder_settings(model, grad_mode=mode):
        with torch.no_grad():
            clean_ok = model(x).argmax(1) == y
        final = gradient.pgd(model, x, y, eps=eps, alpha=eps / 4, steps=steps, norm="Linf", random_start_=True,
                             restarts=1, ids=data.ids, seed=r.settings.seed, on_step=on_step)  # fmt: skip
        with torch.no_grad():
            final_adv = model(final).argmax(1) != y
    return trace, correct, (ever & clean_ok).cpu().numpy(), (final_adv & clean_ok).cpu().numpy()


def _check_convergence(r, cell, pgd, pgd2, eps, steps) -> CheckResult:
    restarts = cell("pgd-restarts", f"pgd:steps={steps},restarts=4")
    a, b, c = _robust(pgd), _robust(pgd2), _robust(restarts)
    trace, correct, _, _ = _loss_trace(r, eps, 2 * steps)
    # the objective of samples already fooled keeps growing without meaning anything; what must be flat
    # at the end is the share of samples the attack still has to fool
    tail = correct[int(0.75 * len(correct)) :]
    drift = tail[0] - tail[-1] if len(tail) > 1 else 0.0
    worst = max(a - b, a - c)
    p = _paired_p(pgd2 if a - b >= a - c else restarts, pgd) if worst > HARD_PP else None  # None: no test ran
    verdict = "fail" if p is not None and p < SIGNIFICANCE else "warn" if worst > TOL_PP or drift > TOL_PP / 2 else "pass"
    summary = (
        f"PGD-{steps} {percent(a)}, PGD-{2 * steps} {percent(b)}, PGD-{steps} x4 restarts {percent(c)} "
        f"(change {worst:+.2f} pp; tolerance {TOL_PP}, fail above {HARD_PP}); over the last quarter of PGD-{2 * steps} "
        f"iterations the share still correct falls by {drift:.2f} pp ({'flat' if drift <= TOL_PP / 2 else 'still falling'})"
        + _noise_note(p)
    )
    return CheckResult("convergence", "more steps and restarts change little", verdict, summary,
                       {"robust_accuracy": {"steps": a, "double_steps": b, "restarts_x4": c},
                        "loss_trace": [round(v, 5) for v in trace], "still_correct_trace": [round(v, 3) for v in correct],
                        "tail_drop_pp": drift, "p_value": p})  # fmt: skip


# -- 4 ------------------------------------------------------------------------------------------------------
def _check_black_box(r, cell, frames, pgd, eps, queries, source, source_reason, steps) -> CheckResult:
    white = None
    for label in ("fgsm", "rfgsm", "pgd", "pgd2", "pgd-restarts"):
        f = _fooled(frames[label])
        white = f if white is None else white | f.reindex(white.index, fill_value=False)
    square = cell("square", f"square:queries={queries}")
    noise = cell("noise", "noise")
    missed = {}
    sq = _fooled(square)
    missed["Square"] = 100.0 * float((sq & ~white.reindex(sq.index, fill_value=False)).mean())
    if source:
        transfer = cell("transfer", f"transfer:source={source},steps={steps}")
        tr = _fooled(transfer)
        missed["Transfer"] = 100.0 * float((tr & ~white.reindex(tr.index, fill_value=False)).mean())
    asr = {"PGD": _asr(pgd), "Square": _asr(square), "noise": _asr(noise)}
    bad_bb = [k for k, v in missed.items() if v > 1.0]
    noise_strong = asr["noise"] > asr["PGD"] + TOL_PP  # random noise must never beat the gradient attack
    noise_close = asr["PGD"] > TOL_PP and asr["noise"] > 0.5 * asr["PGD"]
    verdict = "fail" if bad_bb or noise_strong else "warn" if noise_close else "pass"
    summary = (
        "samples fooled only by black-box attacks: " + ", ".join(f"{k} {v:.2f} %" for k, v in missed.items())
        + f" (fail above 1 %); success rates PGD {percent(asr['PGD'])}, Square-{queries} {percent(asr['Square'])}, "
        f"uniform noise {percent(asr['noise'])}"
        + (f"; transfer skipped: {source_reason}" if not source else f" (transfer from {source})")
    )  # fmt: skip
    return CheckResult("black-box", "white box beats black box and noise", verdict, summary,
                       {"fooled_only_by_black_box": missed, "success_rate": asr, "transfer_source": source})  # fmt: skip


# -- 5 ------------------------------------------------------------------------------------------------------
def _gradients(r: _Runner, limit: int = 64, h: float = 1e-4) -> dict[str, Any]:
    """Input gradients (float64) in both adder modes, zero/non-finite shares, finite-difference agreement."""
    data = r.data.take(slice(0, min(limit, len(r.data))))
    settings = Settings(**{**asdict(r.settings), "dtype": "float64"})
    x, y = data.tensors()
    x, y = x.to(settings.device, torch.float64), y.to(settings.device)
    d = gradient.per_sample_noise(x, data.ids, r.settings.seed, "fd-direction", "normal")
    d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    out: dict[str, Any] = {}
    # zero / non-finite shares in the dtype the attacks use (a float32 softmax saturates where float64 does not)
    attack_model = prepare(r.loaded, r.settings)
    xa = x.to(r.settings.torch_dtype)
    with inference_mode(attack_model, r.settings.bn):
        for mode in GRAD_MODES:
            with adder_settings(attack_model, grad_mode=mode):
                xr = xa.clone().requires_grad_()
                g = torch.autograd.grad(F.cross_entropy(attack_model(xr), y), xr)[0].flatten(1)
            out[mode] = {
                "zero_share": 100.0 * float((g.abs().amax(1) == 0).float().mean()),
                "nonfinite_share": 100.0 * float((~torch.isfinite(g).all(1)).float().mean()),
            }
    model = prepare(r.loaded, settings)
    try:
        with inference_mode(model, settings.bn):
            with torch.no_grad():
                loss = lambda t: F.cross_entropy(model(t), y, reduction="none")  # noqa: E731
                fd = ((loss(x + h * d) - loss(x - h * d)) / (2 * h)).cpu().numpy()
            grads = {}
            for mode in GRAD_MODES:
                with adder_settings(model, grad_mode=mode):
                    xr = x.clone().requires_grad_()
                    g = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)[0]
                grads[mode] = g
                flat = g.flatten(1)
                norms = flat.norm(dim=1)
                analytic = (flat * d.flatten(1)).sum(1).cpu().numpy()
                rel = np.abs(fd - analytic) / np.maximum(np.maximum(np.abs(fd), np.abs(analytic)), 1e-12)
                out[mode]["fd_median_rel_error"] = (
                    float(np.median(rel[norms.cpu().numpy() > 0])) if (norms > 0).any() else float("nan")
                )
            cos = F.cosine_similarity(grads["exact"].flatten(1), grads["surrogate"].flatten(1), dim=1)
            out["cosine_exact_vs_surrogate"] = float(cos.mean())
    finally:
        prepare(r.loaded, r.settings)  # back to the evaluation dtype
    return out


def _check_gradients(r, cell, eps, steps) -> CheckResult:
    g = _gradients(r)
    has_adders = bool(adder_layers(r.loaded.model))
    both = r.settings.grad == "both"
    if both:  # the attacks take the per-sample worst case of both: the healthier gradient is the one that counts
        mode = min(GRAD_MODES, key=lambda m: (g[m]["nonfinite_share"], g[m]["zero_share"], g[m]["fd_median_rel_error"]))
    else:
        mode = r.settings.grad
    gap = float("nan")
    acc = {}
    if has_adders:
        for m in GRAD_MODES:
            acc[m] = _robust(cell(f"pgd-{m}", f"pgd:steps={steps}", eps, grad=m))
        gap = acc["surrogate"] - acc["exact"]
    mine = g[mode]
    verdict = "pass"
    if mine["nonfinite_share"] > 0 or mine["zero_share"] > 10:
        verdict = "fail"
    elif mine["zero_share"] > 1 or mine["fd_median_rel_error"] > 0.1 or (has_adders and not both and abs(gap) > TOL_PP):
        verdict = "warn"
    summary = (
        f"{mode} gradient: zero {mine['zero_share']:.1f} %, NaN/inf {mine['nonfinite_share']:.1f} %, "
        f"median relative error vs finite differences {mine['fd_median_rel_error']:.3f}"
    )
    if has_adders:
        summary += (
            f"; exact gradient: finite-difference error {g['exact']['fd_median_rel_error']:.3f}; cosine(exact, surrogate) "
            f"{g['cosine_exact_vs_surrogate']:.3f}; PGD-{steps} with surrogate {percent(acc['surrogate'])} vs exact "
            f"{percent(acc['exact'])} (gap {gap:+.2f} pp)"
        )
    else:
        summary += " (no adder layers: one gradient)"
    return CheckResult("gradient-health", "gradients are non-zero, finite and match finite differences", verdict, summary,
                       {**g, "pgd_by_grad_mode": acc, "surrogate_minus_exact_pp": gap})  # fmt: skip


# -- 6 ------------------------------------------------------------------------------------------------------
def _check_determinism(r: _Runner) -> CheckResult:
    model = prepare(r.loaded, r.settings)
    x, _ = r.data.tensors(slice(0, min(64, len(r.data))))
    x = x.to(r.settings.device, r.settings.torch_dtype)
    with inference_mode(model, r.settings.bn), torch.no_grad():
        repeat_ok = torch.equal(model(x), model(x))
    base = r.run("none")
    # an odd batch size that leaves no batch of one (BN in train mode cannot normalize a single sample)
    other = next(b for b in (7, 5, 6, 9, 11) if b != r.settings.batch_size and len(r.data) % b != 1)
    variants = {
        f"batch size {other}": r.run("none", batch_size=other),
        "shuffled": r.run("none", shuffle=True, seed=r.settings.seed + 1),
    }
    base_pred = base.set_index("sample_id")["clean_pred"]
    changed = {k: 100.0 * float((v.set_index("sample_id")["clean_pred"].reindex(base_pred.index) != base_pred).mean())
               for k, v in variants.items()}  # fmt: skip
    verdict = "fail" if not repeat_ok or max(changed.values()) > 0 else "pass"
    summary = (
        f"repeated forwards {'identical' if repeat_ok else 'DIFFER'}; predictions changed vs batch {r.settings.batch_size} "
        f"in order: " + ", ".join(f"{k} {v:.2f} %" for k, v in changed.items()) + f" (BN {r.settings.bn})"
    )
    return CheckResult("determinism", "deterministic and independent of batch composition", verdict, summary,
                       {"repeat_identical": repeat_ok, "predictions_changed": changed, "bn": r.settings.bn})  # fmt: skip


# -- 7 ------------------------------------------------------------------------------------------------------
def _check_logits_and_iterates(r: _Runner, eps: float, steps: int) -> CheckResult:
    model = prepare(r.loaded, r.settings)
    x, _ = r.data.tensors(slice(0, min(64, len(r.data))))
    with inference_mode(model, r.settings.bn), torch.no_grad():
        out = model(x.to(r.settings.device, r.settings.torch_dtype))
    probs = bool(((out >= 0) & (out <= 1)).all() and torch.allclose(out.sum(1), torch.ones(len(out), dtype=out.dtype), atol=1e-3))
    _, _, ever, final = _loss_trace(r, eps, steps)
    lost = 100.0 * float((ever & ~final).mean())
    verdict = "fail" if probs else "warn" if lost > 1.0 else "pass"
    summary = (
        f"outputs are {'PROBABILITIES (softmax before the loss masks gradients)' if probs else 'logits'}; "
        f"samples adversarial at some PGD-{steps} iterate but not at the last: {lost:.2f} % (warn above 1 %)"
    )
    return CheckResult("logits-iterates", "logits, and final iterate vs ever adversarial", verdict, summary,
                       {"outputs_are_probabilities": probs, "ever_not_final_share": lost})  # fmt: skip


# -- 8 ------------------------------------------------------------------------------------------------------
def _check_precision(r: _Runner, cell, pgd: pd.DataFrame, eps: float, steps: int) -> CheckResult:
    """Clean and PGD decisions in float32 vs float64 (same samples, same attack, same seed).

    AdderNet outputs reach hundreds to thousands before BN subtracts running means of the same size, so
    float32 summation order can move a decision: the same FGSM on the third-party ANN-20 gave 14.8 % on one
    CPU and 15.1 % on another. A robust accuracy is reported to two decimals; if recomputing it in float64
    changes it by more than its own statistical resolution (one sample), it is not stable to that precision.
    """
    title = "decisions do not depend on float32 rounding"
    if r.settings.dtype == "float64":
        return CheckResult("numerical-stability", title, "n/a", "the evaluation already runs in float64")
    clean32 = r.run("none").set_index("sample_id")
    clean64 = cell("clean-f64", "none", 0.0, dtype="float64").set_index("sample_id")
    pgd64 = cell("pgd-f64", f"pgd:steps={steps}", eps, dtype="float64")
    flips_clean = 100.0 * float((clean32["clean_pred"] != clean64["clean_pred"].reindex(clean32.index)).mean())
    r32 = robust_flags(pgd).set_axis(pgd["sample_id"].to_numpy())
    r64 = robust_flags(pgd64).set_axis(pgd64["sample_id"].to_numpy()).reindex(r32.index)
    flips_adv = 100.0 * float((r32 != r64).mean())
    gap = 100.0 * float(r32.mean() - r64.mean())
    one_sample = 100.0 / max(len(r32), 1)
    verdict = "warn" if abs(gap) > one_sample + 1e-9 or flips_clean > 0 else "pass"
    summary = (
        f"float32 vs float64: clean predictions changed on {flips_clean:.2f} % of samples; PGD-{steps} robust/not "
        f"decisions changed on {flips_adv:.2f} %; robust accuracy {percent(100 * float(r32.mean()))} (float32) vs "
        f"{percent(100 * float(r64.mean()))} (float64)"
        + ("; not stable to the reported precision: report float64 (--dtype float64)" if verdict == "warn" else "")
    )
    return CheckResult("numerical-stability", title, verdict, summary,
                       {"clean_flips_pct": flips_clean, "robust_flips_pct": flips_adv, "robust_gap_pp": gap})  # fmt: skip

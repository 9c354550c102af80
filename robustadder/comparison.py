"""``robustadder compare A B [C ...]``: the one command that answers "is A more robust than B?".

Protocol (every default chosen to make the answer stronger, see the README):

* the same samples for every model (the first ``n`` test images, 1,000 by default), L∞ budgets
  1, 2, 4 and 8/255 — at 8/255 undefended ResNet-20s, ANN or CNN, are all at 0 %, so the budgets where
  models differ are the small ones;
* per sample, the worst case over PGD-20 with 2 restarts (steps scaled with eps) and the reference
  AutoAttack (standard); for models with adder layers every gradient attack runs through both adder
  input gradients (``grad='both'``), so no AdderNet looks robust because one gradient is a poor attack
  direction;
* every accuracy with its 95 % Wilson interval; every difference between two models with the exact
  McNemar test on the paired per-sample outcomes; the same difference among the samples *every*
  compared model classifies correctly (so a model is not "more robust" merely by being more accurate,
  or less accurate), and robust / clean ratios;
* one plain sentence per pair saying what the data supports; a difference counts as significant at
  α = 0.05 after Holm's correction over the budgets of the pair.

Every cell goes through the results store: a rerun is free and an interrupted run resumes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import escape
from .api import ReadsThrough, evaluate, resolve_attacks
from .attacks import format_eps, parse_eps
from .cost import format_cost, format_duration, pending_cost
from .data import Dataset, ImageSet, dataset_title
from .distributed import context
from .engine import GRAD_SETTINGS, Settings, cell_config, cell_hash, data_fingerprint, has_adder_layers, prepare
from .errors import UserError
from .models import Normalization, announce, as_loaded, evaluation_images, module_input_shape, opened_dataset
from .models.module import is_factory_ref
from .store import Store
from .summary import CONFIDENCE, mcnemar_exact, proportion_interval, worst_case_flags

DEFAULT_EPS = ("1/255", "2/255", "4/255", "8/255")
DEFAULT_ATTACKS = ("pgd:steps=20,restarts=2", "autoattack")
ALPHA = 0.05


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _takes_normalization(model: Any) -> bool:
    """Only a module or a factory has no normalization of its own (zoo models and checkpoints carry theirs)."""
    from torch import nn

    return isinstance(model, nn.Module) or (isinstance(model, str) and is_factory_ref(model))


@dataclass
class Comparison(ReadsThrough):
    """What :func:`compare` found: per model and eps, per pair and eps, a verdict per pair, how it was measured.

    Renders itself (:meth:`render`: text, md, latex, csv, html, json; :meth:`to_json`; :meth:`plot`). ``table``
    and ``pairs`` are the pandas views. For code written when ``compare`` returned ``table`` (with the rest in
    its ``attrs``, which it still carries), reading goes through to it: deprecated, use ``result.table``.
    """

    table: pd.DataFrame
    pairs: pd.DataFrame
    verdicts: list[str]
    settings: dict[str, Any]
    protocol: str
    _view = "table"

    def to_json(self) -> dict[str, Any]:
        """Models, pairs, verdicts, settings and protocol as JSON-ready data (NaN as null)."""
        import json

        return json.loads(self.render("json"))

    def render(self, fmt: str) -> str:
        """The comparison as text, md, latex, csv, html or json; the user's labels escaped for the format."""
        return render(self, fmt)

    def plot(self, path: str | os.PathLike | None = None, *, format: str | None = None) -> bytes:
        """Robust accuracy vs eps with intervals, one line per model (see :func:`plot`)."""
        return plot(self, path, format=format)


def _parts(result: Comparison | pd.DataFrame) -> Comparison:
    """A :class:`Comparison` from itself or from the DataFrame ``compare`` returned before (its ``attrs``)."""
    if isinstance(result, Comparison):
        return result
    a = result.attrs
    return Comparison(result, a["pairs"], a["verdicts"], a["settings"], a["protocol"])


def compare(
    models: Sequence[Any],
    *,
    eps: Sequence[Any] = DEFAULT_EPS,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    labels: Sequence[str] | None = None,
    n: int | None = 1000,
    data: str | os.PathLike | ImageSet | None = None,
    store: str | os.PathLike | Store | None = None,
    settings: Settings | None = None,
    normalization: Normalization = None,
    dataset: str | os.PathLike | Dataset | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Comparison:
    """Compare the robustness of two or more models on the same samples of a dataset (default CIFAR-10).

    Returns a :class:`Comparison`: ``table`` has one row per (model, eps) — ``model``, ``eps``, ``eps_label``,
    ``n``, ``clean_accuracy`` with ``clean_ci_low/high``, ``robust_accuracy`` with ``robust_ci_low/high``,
    ``robust_over_clean``, ``seconds`` —, ``pairs`` one per pair and eps (both robust accuracies, the
    difference with its McNemar p-value and Holm-adjusted p-value, the same on the samples every model
    classifies correctly, the clean-accuracy difference), ``verdicts`` one sentence per pair, and
    ``settings`` and ``protocol``. ``settings`` and keyword overrides of its fields as for
    :func:`robustadder.evaluate` (a comparison runs BN in eval mode on the original order).

    ``progress``: say on stderr what the comparison will run (cells already in the store, the range of the
    compute time on this machine) and one line per model and eps as each finishes — lines, because a
    comparison runs for hours, often in the background with stderr in a log file —, plus the cells'
    progress bars where stderr is a terminal or a notebook.
    """
    if len(models) < 2:
        raise UserError("compare needs at least two models (e.g. robustadder compare ann20 cnn20)")
    if labels is not None and len(labels) != len(models):
        raise UserError(f"{len(labels)} labels for {len(models)} models")
    if not eps:
        raise UserError("compare needs at least one eps")
    settings = Settings.of(settings, **overrides)
    if settings.grad not in GRAD_SETTINGS:
        raise UserError(f"--grad must be one of {', '.join(GRAD_SETTINGS)}, not {settings.grad}")
    eps_values = sorted({parse_eps(e, "Linf") for e in eps})
    if eps_values[0] <= 0:
        raise UserError("compare's eps must be positive (clean accuracy is always reported)")
    resolve_attacks(list(attacks), eps=eps_values[0])  # validates names and options before any work
    if settings.bn != "eval" or settings.shuffle:
        raise UserError("compare runs BN in eval mode on the original order (use eval or a sweep for other settings)")
    settings.validate()
    dtype, grad = settings.dtype, settings.grad
    dataset = opened_dataset(dataset)
    shape = module_input_shape(dataset, data)
    loaded = [as_loaded(m, normalization=normalization if _takes_normalization(m) else None, input_shape=shape) for m in models]
    names = list(labels) if labels is not None else [m.name for m in loaded]
    if len(set(names)) != len(names):
        raise UserError(f"models must be distinct: {', '.join(names)} (give --label to tell them apart)")
    if len({m.weights_sha256 for m in loaded}) != len(loaded):
        raise UserError("two of the models have the same weights; compare different models")
    images = evaluation_images(loaded, dataset, data, n)
    for model in loaded:
        announce(model)
    own_store = not isinstance(store, Store)
    db = Store.open(store) if own_store else store
    rows, flags = [], {}  # flags[(model, eps)] = per-sample robust (worst case); flags[(model, None)] = clean
    progress = progress and context().is_main  # under torchrun, rank 0 speaks for all
    bars = progress and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    try:
        if db.run_id is None:
            db.start_run("compare", settings.resolved()["device"])
        if progress:
            _say_plan(db, loaded, names, eps_values, attacks, images, settings)
        blocks = len(loaded) * len(eps_values)
        for model, name in zip(loaded, names, strict=True):
            for e in eps_values:
                started = time.perf_counter()
                result = evaluate(model, ["none", *attacks], eps=e, data=images, store=db, settings=settings, progress=bars)
                frame = result.frame
                clean = frame[frame["attack_name"] == "none"].set_index("sample_id")["clean_correct"].astype(bool)
                attacked = [part for _, part in frame[frame["attack_name"] != "none"].groupby("attack", sort=False)]
                robust = worst_case_flags(attacked).reindex(clean.index)  # robust implies clean-correct
                flags[(name, None)], flags[(name, e)] = clean, robust
                k, m = int(robust.sum()), len(robust)
                c = int(clean.sum())
                (clean_low, clean_high), (robust_low, robust_high) = proportion_interval(c, m), proportion_interval(k, m)
                rows.append({
                    "model": name, "eps": e, "eps_label": format_eps(e), "n": m,
                    "clean_accuracy": 100.0 * c / m, "clean_ci_low": clean_low, "clean_ci_high": clean_high,
                    "robust_accuracy": 100.0 * k / m, "robust_ci_low": robust_low, "robust_ci_high": robust_high,
                    "robust_over_clean": k / c if c else float("nan"),
                    "seconds": float(sum(s["seconds"] for s in result.summary)),  # measured, stored with cells
                    "adder_layers": has_adder_layers(model.model),
                })  # fmt: skip
                if progress:
                    reused = all(part["reused"] for part in result.summary)
                    spent = "every cell reused from the store" if reused else f"{format_duration(time.perf_counter() - started)}"
                    print(f"compare [{len(rows)}/{blocks}] {name} eps {format_eps(e)}: clean {_pct(c, m)}, "
                          f"robust {_pct(k, m)} ({spent})", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if own_store:
            db.close()
    table = pd.DataFrame(rows)
    common = pd.concat([flags[(name, None)] for name in names], axis=1).all(axis=1)  # clean-correct for all
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            clean_test = mcnemar_exact(flags[(a, None)].to_numpy(), flags[(b, None)].reindex(flags[(a, None)].index).to_numpy())
            block = []
            for e in eps_values:
                fa, fb = flags[(a, e)], flags[(b, e)].reindex(flags[(a, e)].index)
                test = mcnemar_exact(fa.to_numpy(), fb.to_numpy())
                ca, cb = fa[common.reindex(fa.index)], fb[common.reindex(fa.index)]
                test_c = mcnemar_exact(ca.to_numpy(), cb.to_numpy()) if len(ca) else None
                block.append({
                    "a": a, "b": b, "eps": e, "eps_label": format_eps(e), "n": len(fa),
                    "robust_a": 100.0 * float(fa.mean()), "robust_b": 100.0 * float(fb.mean()),
                    "difference": test["difference"], "a_only": test["a_only"], "b_only": test["b_only"],
                    "p_value": test["p_value"],
                    "n_common_clean": int(len(ca)),
                    "robust_a_common": 100.0 * float(ca.mean()) if len(ca) else float("nan"),
                    "robust_b_common": 100.0 * float(cb.mean()) if len(cb) else float("nan"),
                    "difference_common": test_c["difference"] if test_c else float("nan"),
                    "p_value_common": test_c["p_value"] if test_c else float("nan"),
                    "clean_difference": clean_test["difference"], "clean_p_value": clean_test["p_value"],
                })  # fmt: skip
            for row, adj in zip(block, holm([r["p_value"] for r in block]), strict=True):
                row["p_holm"] = adj
            for row, adj in zip(block, holm([r["p_value_common"] for r in block]), strict=True):
                row["p_holm_common"] = adj
            pairs.extend(block)
    pairs_df = pd.DataFrame(pairs)
    clean_of = {name: table[table["model"] == name]["clean_accuracy"].iloc[0] for name in names}
    verdicts = [verdict(pairs_df[(pairs_df.a == a) & (pairs_df.b == b)], clean_of, dtype)
                for i, a in enumerate(names) for b in names[i + 1 :]]  # fmt: skip
    recorded = {
        "n": len(images),
        "first_id": int(images.ids.min()),
        "last_id": int(images.ids.max()),
        # the file by name (as report's provenance does) and the samples by content hash, never a local path:
        # a result is shared and committed
        "data": Path(images.source).name,
        "data_fingerprint": data_fingerprint(images),
        "dataset": images.dataset,
        "attacks": list(attacks),
        "grad": grad,
        "dtype": dtype,
        "device": settings.device,
        "batch_size": settings.batch_size,
        "seed": settings.seed,
        "confidence": CONFIDENCE,
        "alpha": ALPHA,
    }
    result = Comparison(table, pairs_df, verdicts, recorded, protocol_text(attacks, grad, dtype))
    table.attrs.update(pairs=pairs_df, verdicts=verdicts, settings=recorded, protocol=result.protocol)
    return result


def _pct(k: int, n: int) -> str:
    """'14.2 % [12.1, 16.6]': a proportion with its 95 % interval, as a progress line shows it."""
    low, high = proportion_interval(k, n)
    return f"{100.0 * k / n:.1f} % [{low:.1f}, {high:.1f}]"


def _say_plan(db: Store, loaded, names, eps_values, attacks, images: ImageSet, settings: Settings) -> None:
    """Before the work: how many cells the comparison needs, how many the store holds, what the rest may cost."""
    total, todo, low, high = 0, 0, 0.0, 0.0
    for model in loaded:
        every = [c for e in eps_values for c in resolve_attacks(["none", *attacks], eps=e)]
        configs = list({cell_hash(cell_config(model, c, settings, images)): c for c in every}.values())  # one clean cell
        pending, least, most = pending_cost(db, model, prepare(model, settings), configs, settings, images)
        total, todo, low, high = total + len(configs), todo + len(pending), low + least, high + most
    cost = f"{format_cost(low, high)} of compute on this machine (calibrated by a short measurement" + (
        "; adaptive attacks such as AutoAttack run their later stages only on the samples still robust)" if low < high else ")"
    )
    print(f"compare: {len(names)} models x {len(eps_values)} eps x {len(attacks)} attack(s) + clean on {len(images)} images: "
          f"{total} cells, {total - todo} already in the store" + (f", {todo} to run, {cost}" if todo else ""),
          file=sys.stderr, flush=True)  # fmt: skip


def protocol_text(attacks: Sequence[str], grad: str, dtype: str) -> str:
    """One paragraph that says how the numbers were obtained (printed with every comparison)."""
    return (
        f"Per sample, the worst case over {', '.join(attacks)} (L∞; iterative steps eps/4"
        + (", adder models attacked through both input gradients" if grad == "both" else f", adder gradient {grad}")
        + f"); arithmetic in {dtype}. Intervals: 95 % Wilson. Differences: exact McNemar test on paired "
        f"per-sample outcomes, significant at {ALPHA} after Holm's correction over the budgets of a pair."
    )


def verdict(pair: pd.DataFrame, clean: dict[str, float], dtype: str) -> str:
    """One plain sentence (or two) stating what the data of one pair supports."""
    a, b = pair["a"].iloc[0], pair["b"].iloc[0]
    sig = pair[pair["p_holm"] < ALPHA]
    clean_gap = clean[a] - clean[b]
    clean_p = float(pair["clean_p_value"].iloc[0])
    clean_part = f"clean accuracy {clean[a]:.1f} % vs {clean[b]:.1f} % ({clean_gap:+.1f} points, p = {clean_p:.2g})"
    if (pair["robust_a"] == 0).all() and (pair["robust_b"] == 0).all():
        head = (
            f"{a} vs {b}: both at 0 % robust accuracy at every eps ({', '.join(pair['eps_label'])}); these budgets "
            "cannot tell the models apart (try smaller eps)"
        )
    elif sig.empty:
        largest = pair.loc[pair["difference"].abs().idxmax()]
        head = (
            f"{a} vs {b}: no significant difference in robust accuracy at any eps "
            f"(largest {largest['difference']:+.1f} points at {largest['eps_label']}, p = {largest['p_value']:.2g}, "
            f"n = {int(largest['n'])})"
        )
    else:
        parts = []
        for winner, rows in (("a", sig[sig["difference"] > 0]), ("b", sig[sig["difference"] < 0])):
            if rows.empty:
                continue
            who = a if winner == "a" else b
            detail = ", ".join(f"{r.eps_label}: {abs(r.difference):.1f} points, p = {r.p_value:.2g}" for r in rows.itertuples())
            parts.append(f"{who} is more robust at {detail}")
        rest = pair[pair["p_holm"] >= ALPHA]
        tail = f"; no significant difference at {', '.join(rest['eps_label'])}" if not rest.empty else ""
        head = f"{a} vs {b}: " + "; ".join(parts) + tail + f" (n = {int(pair['n'].iloc[0])})"
    common = pair[pair["p_holm_common"] < ALPHA]
    if not (pair["n_common_clean"] > 0).any():
        matched = "no sample is classified correctly by every model, so robustness on common samples is not compared"
    elif common.empty:
        matched = "among the samples every model classifies correctly, no significant difference"
    else:
        r = common.iloc[0]
        who = a if r["difference_common"] > 0 else b
        matched = (
            f"among the {int(r['n_common_clean'])} samples every model classifies correctly, {who} is more robust at "
            + ", ".join(f"{x.eps_label} ({abs(x.difference_common):.1f} points)" for x in common.itertuples())
        )
    return f"{head}; {clean_part}; {matched} [{dtype}]."


# -- rendering ---------------------------------------------------------------------------------------------
def _display(table: pd.DataFrame) -> pd.DataFrame:
    """Model × eps text table: robust accuracy with its interval; a clean column."""
    out = {}
    for name, rows in table.groupby("model", sort=False):
        first = rows.iloc[0]
        entry = {"clean": f"{first.clean_accuracy:.1f} [{first.clean_ci_low:.1f}, {first.clean_ci_high:.1f}]"}
        for r in rows.itertuples():
            entry[r.eps_label] = f"{r.robust_accuracy:.1f} [{r.robust_ci_low:.1f}, {r.robust_ci_high:.1f}]"
        out[name] = entry
    df = pd.DataFrame(out).T
    df.index.name = "model"
    return df


def _pairs_display(pairs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "pair": [f"{r.a} − {r.b}" for r in pairs.itertuples()],
        "eps": pairs["eps_label"],
        "Δ robust (points)": [f"{v:+.1f}" for v in pairs["difference"]],
        "p (McNemar)": [f"{v:.2g}" for v in pairs["p_value"]],
        "p (Holm)": [f"{v:.2g}" for v in pairs["p_holm"]],
        "Δ on common clean-correct": [
            f"{v:+.1f} (n={n})" if n else "– (n=0)"
            for v, n in zip(pairs["difference_common"], pairs["n_common_clean"], strict=True)
        ],
        "Δ clean": [f"{v:+.1f}" for v in pairs["clean_difference"]],
    })  # fmt: skip


#: the pairs table's headers in LaTeX: short enough for a paper's text width
_LATEX_PAIR_HEADERS = {"Δ robust (points)": "Δ", "p (McNemar)": "p", "p (Holm)": "p (Holm)",
                       "Δ on common clean-correct": "Δ common", "Δ clean": "Δ clean"}  # fmt: skip


def render(result: Comparison | pd.DataFrame, fmt: str) -> str:
    """The comparison as text, md, latex, csv, html or json; the user's labels escaped for the format."""
    import json

    result = _parts(result)
    table, pairs, verdicts = result.table, result.pairs, result.verdicts
    if fmt == "json":
        return json.dumps({
            "models": json.loads(table.to_json(orient="records")),
            "pairs": json.loads(pairs.to_json(orient="records")),
            "verdicts": verdicts, "settings": result.settings, "protocol": result.protocol,
        }, indent=1)  # fmt: skip
    if fmt == "csv":
        merged = table.merge(pairs, how="left", left_on=["model", "eps"], right_on=["a", "eps"], suffixes=("", "_pair"))
        return escape.csv_frame(merged).to_csv(index=False, float_format="%.6g")
    shown, shown_pairs = _display(table), _pairs_display(pairs)
    settings = result.settings
    caption = (
        f"Robust accuracy (%) [95 % interval] on the first {settings['n']} {dataset_title(settings.get('dataset'))} test images. "
        + result.protocol
    )
    if fmt == "text":
        return "\n".join([shown.to_string(), "", shown_pairs.to_string(index=False), "", *verdicts, "", caption])
    if fmt == "md":
        md = escape.markdown
        tables = [escape.frame_text(shown, md).to_markdown(disable_numparse=True),
                  escape.frame_text(shown_pairs, md).to_markdown(index=False, disable_numparse=True)]  # fmt: skip
        # a page leads with the answer: the verdicts, then the tables they rest on and how they were measured
        return "\n".join([*[f"- {md(v)}" for v in verdicts], "", tables[0], "", tables[1], "", md(caption), ""])
    if fmt == "latex":
        from .report.latex import latex_float

        tex = escape.latex
        short = escape.frame_text(shown_pairs.rename(columns=_LATEX_PAIR_HEADERS), tex)
        return latex_float("compare", tex(caption), escape.frame_text(shown, tex).style.to_latex(hrules=True),
                           short.style.hide(axis="index").to_latex(hrules=True))  # fmt: skip
    if fmt == "html":
        esc = escape.html
        items = "".join(f"<li>{esc(v)}</li>" for v in verdicts)
        return (
            "<!doctype html><meta charset='utf-8'><title>robustadder compare</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{padding:.2em .6em;border-bottom:1px solid #ccc;text-align:right}</style>"
            f"<h1>Robustness comparison</h1><ul>{items}</ul><p>{esc(caption)}</p>"
            f"{escape.frame_text(shown, esc).style.to_html(table_uuid='models')}"
            f"<h2>Pairs</h2>{escape.frame_text(shown_pairs, esc).style.hide(axis='index').to_html(table_uuid='pairs')}"
        )
    raise UserError(f"unknown format '{fmt}' (text, md, latex, csv, html, json)")


def plot(result: Comparison | pd.DataFrame, path: str | os.PathLike | None = None, *, format: str | None = None) -> bytes:
    """Robust accuracy vs eps with 95 % intervals, one line per model; the figure's bytes (PNG, PDF, SVG, ...).

    ``format`` defaults to ``path``'s extension, else PNG. With ``path`` the figure is also written there,
    atomically and never over a file this process read. Labels are shown as typed (``$`` is no mathtext).
    """
    from .plotting import finish_robustness, plain_text_figures

    result = _parts(result)
    table = result.table
    with plain_text_figures() as plt:
        fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=150)
        for name, rows in table.groupby("model", sort=False):
            y = rows["robust_accuracy"].to_numpy()
            err = np.vstack([y - rows["robust_ci_low"].to_numpy(), rows["robust_ci_high"].to_numpy() - y])
            ax.errorbar(rows["eps"] * 255, y, yerr=err, marker="o", capsize=3, label=str(name))
        ax.set_xscale("log", base=2)
        ticks = sorted(table["eps"].unique() * 255)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        return finish_robustness(fig, ax, f"n = {result.settings['n']}, 95 % Wilson intervals", path, format)

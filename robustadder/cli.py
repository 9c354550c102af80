"""The ``robustadder`` command line: parse, call the library, render. Nothing else lives here.

Every :class:`~robustadder.errors.UserError` raised below a command ends as one line on stderr and exit
code 2 (click's own usage errors already behave that way); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import UserError


class _Group(click.Group):
    """Click group that turns library UserErrors into click errors with exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            err = click.ClickException(str(exc))
            err.exit_code = 2
            raise err from None
        except KeyboardInterrupt:
            click.echo("interrupted; finished work is kept", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="robustadder")
def main() -> None:
    """Adversarial-robustness evaluation of Adder Neural Networks (and their CNN counterparts)."""


def _fmt_pct(value: float) -> str:
    return f"{value:.2f} %"


@main.command("eval")
@click.option("--model", "model_name", required=True, help="Zoo name (see 'robustadder models') or checkpoint path.")
@click.option("--attack", default="none", show_default=True, help="Attack to run; 'none' measures clean accuracy.")
@click.option("--n", "n", type=int, default=None, help="Evaluate the first N test images (original order).")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--data", type=click.Path(), default=None, help="CIFAR-10 directory [env ROBUSTADDER_DATA].")
@click.option("--arch", default=None, help="Architecture of a checkpoint without metadata (e.g. resnet20_adder).")
@click.option("--backend", default="auto", show_default=True, help="Adder backend: auto, cpu, triton, reference.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float64"]))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def eval_cmd(model_name, attack, n, batch_size, data, arch, backend, device, dtype, as_json) -> None:
    """Evaluate a model on the CIFAR-10 test set."""
    from .api import evaluate

    frame = evaluate(
        model_name,
        attack,
        n=n,
        data=data,
        batch_size=batch_size,
        backend=backend,
        device=device,
        dtype=dtype,
        arch=arch,
        progress=not as_json or sys.stderr.isatty(),
    )
    meta = frame.attrs
    clean = 100.0 * float(frame["clean_correct"].mean())
    result = {
        "model": meta["model"],
        "arch": meta["arch"],
        "variant": meta["variant"],
        "weights_sha256": meta["weights_sha256"],
        "n": len(frame),
        "clean_accuracy": round(clean, 4),
        "seconds": round(meta["seconds"], 3),
        "data": meta["data"],
        "backend": meta["backend"],
    }
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"model           {result['model']} ({result['arch']}, {result['variant']})")
    click.echo(f"samples         {result['n']} (ids {frame['sample_id'].min()}..{frame['sample_id'].max()})")
    click.echo(f"clean accuracy  {_fmt_pct(clean)}")
    click.echo(f"time            {meta['seconds']:.1f} s (adder backend: {meta['backend']})")


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def models_cmd(as_json: bool) -> None:
    """List the model zoo."""
    from .models import count_parameters, load_zoo

    rows = []
    for entry in load_zoo().values():
        spec = entry.spec
        rows.append(
            {
                "name": entry.name,
                "arch": spec.name,
                "variant": spec.variant,
                "parameters": count_parameters(spec.name),
                "source": entry.source,
                "accuracy": entry.accuracy,
                "accuracy_source": entry.accuracy_source,
                "present": entry.present(),
                "path": str(entry.local_path()),
            }
        )
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("the zoo is empty")
        return
    import pandas as pd

    table = pd.DataFrame(rows)[["name", "arch", "variant", "parameters", "accuracy", "present", "source"]]
    table["accuracy"] = table["accuracy"].map(lambda v: "" if v is None else f"{v:.2f} %")
    click.echo(table.to_string(index=False))


@main.group("data")
def data_cmd() -> None:
    """Manage the CIFAR-10 data."""


@data_cmd.command("download")
@click.option("--data", type=click.Path(), default=None, help="Target directory [env ROBUSTADDER_DATA].")
def data_download(data) -> None:
    """Download the official CIFAR-10 python release (md5-checked)."""
    from .data import download_cifar10

    click.echo(f"CIFAR-10 is in {download_cifar10(data)}")


@main.group("bench")
def bench_cmd() -> None:
    """Benchmarks (timings are measured in the run that prints them)."""


@bench_cmd.command("kernels")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--backends",
    default=None,
    help="Comma-separated: cpu, triton, reference, official (the official formula). "
    "Default: the fast backend of the device plus reference and official.",
)
@click.option("--repeats", type=int, default=9, show_default=True, help="Timed repeats of fast ops (median).")
@click.option("--data", type=click.Path(), default=None, help="CIFAR-10 for the end-to-end rows.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows on stdout.")
def bench_kernels(batch_size, device, backends, repeats, data, as_json) -> None:
    """Adder backends vs F.conv2d on every ResNet-20 adder-layer shape, plus end-to-end rows."""
    import torch

    from . import bench
    from .engine import Settings

    Settings(batch_size=batch_size, device=device).validate()
    fast = "triton" if torch.device(device).type == "cuda" else "cpu"
    names = tuple(b.strip() for b in (backends or f"{fast},reference,official").split(",") if b.strip())
    say = (lambda msg: click.echo(f"  measuring {msg}", err=True)) if not as_json else None
    rows = bench.kernel_rows(batch_size, names, device, repeats, progress=say)
    if torch.device(device).type == "cpu" and "cpu" in names:
        rows += bench.compile_rows()
    rows += bench.end_to_end_rows(1000, batch_size, fast, device, data)
    if as_json:
        click.echo(json.dumps(rows))
        return
    import pandas as pd

    click.echo(pd.DataFrame(rows).to_string(index=False))

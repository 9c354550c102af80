"""The ``robustadder`` command line: parse, call the library, render. Nothing else lives here.

Every :class:`~robustadder.errors.UserError` raised below a command ends as one line on stderr and exit
code 2 (click's own usage errors already behave that way); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import click

from ._version import __version__
from .errors import Interrupted, UserError, interruption
from .fileio import check_output, write_output


class _Group(click.Group):
    """Click group that turns library UserErrors into click errors with exit code 2.

    Every error a user can cause ends in one line on stderr: click's own usage errors (a bad option
    value) print a usage block and a hint above the error in standalone mode, so they are shown here
    as one line that names the help to read.
    """

    def main(self, *args, **kwargs):  # noqa: D102 - click's entry point
        kwargs["standalone_mode"] = False
        _stop_cleanly_on_signals()
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # no command given: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            err = click.ClickException(str(exc))
            err.exit_code = 2
            raise err from None
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: cells were marked, the store closed
            what, status = interruption(exc)
            click.echo(f"interrupted by {what}; finished work is kept (run the command again to resume)", err=True)
            sys.exit(status)
        except sqlite3.DatabaseError as exc:  # a damaged store, a full disk, a lock held too long
            err = click.ClickException(
                f"results store error: {exc} (the store may be damaged or locked by another program, or the disk full); "
                "finished batches are kept"
            )
            err.exit_code = 2
            raise err from None


def _stop_cleanly_on_signals() -> None:
    """SIGTERM and SIGHUP end a command as Ctrl-C does, instead of killing it on the spot.

    The batch under way is abandoned, the running cell and the run are marked interrupted, finished batches
    are kept, one line says so and the exit status is 128 + the signal. Killed by default, a command left
    its cell 'running' in the store.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, _frame):
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):  # an embedding program's own handler wins
            signal.signal(sig, handler)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="robustadder")
def main() -> None:
    """Adversarial-robustness evaluation of Adder Neural Networks (and their CNN counterparts)."""


SETTINGS_OPTIONS: dict[str, Callable[[Callable], Callable]] = {  # the one declaration of every settings flag
    "bn": click.option("--bn", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
                       help="BN statistics: running (eval) or of the current batch (train), at attack and prediction."),
    "shuffle": click.option("--shuffle/--no-shuffle", default=False, show_default=True,
                            help="Shuffle the test-set order (hence batch composition) with --seed."),
    "seed": click.option("--seed", type=int, default=0, show_default=True, help="Order and attack randomness."),
    "batch_size": click.option("--batch-size", type=int, default=128, show_default=True),
    "grad": click.option("--grad", type=click.Choice(["both", "surrogate", "exact"]), default="both", show_default=True,
                         help="Adder input gradient white-box attacks follow: both = each attack once per gradient "
                              "(surrogate HardTanh and exact sign), per-sample worst case (CNNs have one gradient)."),
    "backend": click.option("--backend", default="auto", show_default=True, help="Adder backend: auto, cpu, triton, reference."),
    "dtype": click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float64"])),
    "device": click.option("--device", default="cpu", show_default=True),
}  # fmt: skip


def settings_options(*omit: str):
    """The inference-settings flags, declared once for every command that runs models.

    The command receives them as one ``settings`` argument (a :class:`robustadder.engine.Settings`, not yet
    validated); ``omit`` names the settings a command fixes itself (``compare`` runs BN eval in the original order).
    """

    def decorate(fn):
        names = [k for k in SETTINGS_OPTIONS if k not in omit]

        @functools.wraps(fn)
        def run(*args, **kwargs):
            from .engine import Settings

            return fn(*args, settings=Settings(**{k: kwargs.pop(k) for k in names}), **kwargs)

        for name in reversed(names):
            run = SETTINGS_OPTIONS[name](run)
        return run

    return decorate


MODEL_HELP = (
    "Zoo name (see 'robustadder models'), checkpoint path, or a factory FILE.py:fn / package.module:fn that "
    "returns an nn.Module (FILE.py is your own code and runs as Python when imported; official-style adder2d "
    "layers are converted and that is said)."
)


DATASET_HELP = (
    "Test data: cifar10, cifar100, svhn, imagefolder:PATH (class sub-folders, resized to the model) or npz:PATH "
    "(arrays x, y) [default: the dataset the model was trained on, else cifar10]."
)


def data_options(fn):
    """--dataset (what the images are) and --data (where the named datasets live)."""
    fn = click.option("--data", type=click.Path(), default=None,
                      help="Directory of the named datasets [env ROBUSTADDER_DATA].")(fn)  # fmt: skip
    return click.option("--dataset", default=None, help=DATASET_HELP)(fn)


def model_options(fn):
    """--weights and --normalization: what a factory model needs besides its code."""
    fn = click.option("--normalization", default=None,
                      help="Input normalization inside a factory model: cifar10, imagenet, none or MEAN,..:STD,.. "
                      "[default: none, the model takes [0, 1] images].")(fn)  # fmt: skip
    return click.option("--weights", type=click.Path(dir_okay=False), default=None,
                        help="State dict for a factory model (read with weights_only=True).")(fn)  # fmt: skip


@main.command("eval")
@click.option("--model", "model_name", required=True, help=MODEL_HELP)
@model_options
@click.option("--attack", "attacks", multiple=True, default=("none",), show_default=True,
              help="Attack name, optionally with options: pgd:steps=7,alpha=2/255. Repeat for several "
              "(a per-sample worst case is added). 'none' measures clean accuracy.")  # fmt: skip
@click.option("--eps", default=None, help="Perturbation budget, e.g. 8/255 or 0.031 [default: 8/255, L2 0.5].")
@click.option("--norm", type=click.Choice(["Linf", "L2"]), default=None, help="Threat model [default: Linf].")
@click.option("--steps", default=None, help="Iterations of iterative attacks.")
@click.option("--step-size", "alpha", default=None, help="Step size alpha, e.g. 2/255.")
@click.option("--restarts", default=None, help="Random restarts (pgd, apgd-*, square).")
@click.option("--random-start/--no-random-start", default=None, help="PGD random start [default: on].")
@click.option("--version", "aa_version", default=None, help="AutoAttack version: standard, plus, rand.")
@click.option("--source", default=None, help="Source model of the transfer attack.")
@click.option("--queries", default=None, help="Square Attack query budget.")
@click.option("--param", "extra", multiple=True, help="Any other attack option as KEY=VALUE.")
@click.option(
    "--n",
    "--samples",
    "n",
    type=int,
    default=None,
    help="Evaluate the first N test images (in the dataset's order); --samples under torchrun, whose parser claims --n.",
)
@data_options
@click.option("--store", type=click.Path(), default=None, help="Results store [env ROBUSTADDER_STORE, ./robustadder.sqlite].")
@click.option("--force", is_flag=True, help="Recompute cells that are already in the store.")
@click.option("--arch", default=None, help="Architecture of a checkpoint without metadata (e.g. resnet20_adder).")
@settings_options()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def eval_cmd(model_name, weights, normalization, attacks, eps, norm, steps, alpha, restarts, random_start, aa_version,
             source, queries, extra, n, dataset, data, store, force, arch, settings, as_json) -> None:  # fmt: skip
    """Evaluate a model on a test set (CIFAR-10 by default), clean or under attack.

    Under torchrun (``torchrun --nproc-per-node K -m robustadder eval ...``) the ranks share every cell's
    batches; rank 0 prints the result.
    """
    from . import distributed
    from .api import evaluate
    from .models import as_loaded, module_input_shape

    dist = distributed.init(settings.device)
    settings = replace(settings, device=dist.device(settings.device))
    given = {"steps": steps, "alpha": alpha, "restarts": restarts, "random_start": random_start,
             "version": aa_version, "source": source, "queries": queries}  # fmt: skip
    params = {k: v for k, v in given.items() if v is not None}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--param '{item}' must look like KEY=VALUE")
        params[key.strip().replace("-", "_")] = value.strip()
    try:
        model = as_loaded(model_name, arch=arch, weights=weights, normalization=normalization,
                          input_shape=module_input_shape(dataset))  # fmt: skip
        result = evaluate(model, list(attacks), eps=eps, norm=norm, params=params, n=n, dataset=dataset, data=data,
                          store=store, force=force, settings=settings,
                          progress=(not as_json or sys.stderr.isatty()) and dist.is_main)  # fmt: skip
    finally:
        distributed.shutdown()
    if dist.is_main:
        click.echo(result.render("json" if as_json else "text"))


@main.command("models")
@click.option("--ops", is_flag=True, help="Add additions, multiplications and energy per inference (45 nm figures).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def models_cmd(ops: bool, as_json: bool) -> None:
    """List the model zoo."""
    from .models import count_parameters, create_model, load_zoo

    rows = []
    for entry in load_zoo().values():
        spec = entry.spec
        row = {
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
        if ops:
            from .ops import count_ops

            counts = count_ops(create_model(spec.name))
            row.update(adds=counts.total_adds, muls=counts.total_muls, energy_uj=round(counts.energy_uj, 2))
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("the zoo is empty")
        return
    import pandas as pd

    columns = ["name", "arch", "variant", "parameters", "accuracy", "present"]
    if ops:
        columns += ["adds", "muls", "energy_uj"]
    table = pd.DataFrame(rows)[columns + ["source"]]
    table["accuracy"] = table["accuracy"].map(lambda v: "" if v is None else f"{v:.2f} %")
    if ops:
        table["adds"] = table["adds"].map(lambda v: f"{v / 1e6:.2f}M")
        table["muls"] = table["muls"].map(lambda v: f"{v / 1e6:.2f}M")
        table = table.rename(columns={"energy_uj": "energy (uJ)"})
    click.echo(table.to_string(index=False))
    if ops:
        from .ops import ENERGY_SOURCE

        click.echo(f"\nper inference of one 32x32 image; energy from {ENERGY_SOURCE}")


@main.group("data")
def data_cmd() -> None:
    """The datasets: list them, download the official releases."""


@data_cmd.command("list")
@click.option("--data", type=click.Path(), default=None, help="Directory of the named datasets [env ROBUSTADDER_DATA].")
def data_list(data) -> None:
    """The registered datasets (classes, image shape, training statistics) and whether each is present."""
    import pandas as pd

    from .data import DATASETS, SCHEMES, resolve_data_dir

    rows = []
    for name, d in DATASETS.items():
        try:
            d.load("test", data, n=1)
            present = "yes"
        except UserError:
            present = "no"
        mean, std = d.normalization or ((), ())
        image = "x".join(map(str, d.input_shape or ()))
        rows.append({"dataset": name, "title": d.title, "classes": d.num_classes, "image": image,
                     "mean": ",".join(f"{v:g}" for v in mean), "std": ",".join(f"{v:g}" for v in std),
                     "splits": "/".join(d.splits), "present": present, "files": d.where})  # fmt: skip
    click.echo(pd.DataFrame(rows).to_string(index=False))
    click.echo(f"\ndata directory: {resolve_data_dir(data)}")
    click.echo(f"file-based: {', '.join(f'{s}:PATH' for s in SCHEMES)} (see 'robustadder eval --help')")


@data_cmd.command("download")
@click.option("--dataset", default="cifar10", show_default=True, help="cifar10, cifar100 or svhn.")
@click.option("--split", "splits", multiple=True, default=("test",), show_default=True,
              help="Splits to fetch where they are separate files (svhn); archives hold both.")  # fmt: skip
@click.option("--data", type=click.Path(), default=None, help="Target directory [env ROBUSTADDER_DATA].")
def data_download(dataset, splits, data) -> None:
    """Download a dataset's official release into the data directory (md5-checked)."""
    from .data import DATASETS, open_dataset, resolve_data_dir

    d = open_dataset(dataset)
    if d.download is None:
        known = ", ".join(k for k, v in DATASETS.items() if v.download)
        raise UserError(f"{d.title} has no download; datasets with one: {known}")
    click.echo(f"{d.title} is in {d.download(resolve_data_dir(data), tuple(splits))}")


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
@click.option("--repeats", type=int, default=9, show_default=True, help="Timed repeats of fast ops and attack steps (median).")
@click.option("--data", type=click.Path(), default=None, help="CIFAR-10 for the end-to-end and trained-layer rows.")
@click.option("--imagenet/--no-imagenet", default=True, show_default=True,
              help="Also time an ImageNet ResNet-50 AdderNet forward (batch 8) against the conv ResNet-50.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows on stdout.")
def bench_kernels(batch_size, device, backends, repeats, data, imagenet, as_json) -> None:
    """Adder backends vs F.conv2d on every ResNet-20 adder-layer shape, plus end-to-end rows."""
    import torch

    from . import bench
    from .engine import Settings

    Settings(batch_size=batch_size, device=device).validate()
    fast = "triton" if torch.device(device).type == "cuda" else "cpu"
    names = tuple(b.strip() for b in (backends or f"{fast},reference,official").split(",") if b.strip())
    say = (lambda msg: click.echo(f"  measuring {msg}", err=True)) if not as_json else None
    on_gpu = torch.device(device).type == "cuda"
    rows = bench.kernel_rows(batch_size, names, device, repeats, progress=say)
    if not on_gpu and "cpu" in names:
        rows += bench.general_path_rows(batch_size, repeats)
        rows += bench.trained_layer_rows(batch_size, repeats, data)
        rows += bench.deterministic_conv_rows(batch_size, repeats)
        rows += bench.compile_rows()
    # a GPU evaluates the whole test set in about the time a CPU takes for a tenth of it
    rows += bench.end_to_end_rows(10000 if on_gpu else 1000, batch_size, fast, device, data, repeats)
    if imagenet:
        rows += bench.imagenet_rows(8, fast, device)
    info = bench.machine_info(device)
    if not as_json:
        click.echo(json.dumps(info))
    _echo_rows(rows, as_json, {"machine": info, "batch_size": batch_size})


def _echo_rows(rows: list[dict], as_json: bool, head: dict, drop: tuple[str, ...] = ()) -> None:
    """A benchmark's rows: one JSON object (``head``, e.g. the machine, then the rows) or a table without ``drop``."""
    if as_json:
        click.echo(json.dumps({**head, "rows": rows}))
        return
    import pandas as pd

    click.echo(pd.DataFrame(rows).drop(columns=list(drop)).to_string(index=False))


@bench_cmd.command("compare")
@click.argument("models", nargs=-1)
@click.option("--n", type=int, default=100, show_default=True)
@click.option("--eps", "eps_list", default="1/255,8/255", show_default=True)
@click.option("--attack", "attacks", multiple=True, help="[default: compare's defaults]")
@click.option("--data", type=click.Path(), default=None, help="CIFAR-10 directory [env ROBUSTADDER_DATA].")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_compare(models, n, eps_list, attacks, data, device, as_json) -> None:
    """Compute cost of `robustadder compare` per 100 images, per model and eps (fresh store, nothing reused)."""
    from . import bench

    rows = bench.compare_cost_rows(list(models) or ["ann20", "cnn20"], n, tuple(e for e in eps_list.split(",") if e),
                                   tuple(attacks) or None, data, device=device)  # fmt: skip
    _echo_rows(rows, as_json, {"machine": bench.machine_info(device)}, drop=("attacks",))


@bench_cmd.command("train")
@click.option("--depth", "depths", multiple=True, type=click.Choice(["20", "32", "56"]), default=("20", "32"), show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed steps of each model (median).")
@click.option("--json", "as_json", is_flag=True)
def bench_train(depths, batch_size, repeats, as_json) -> None:
    """Seconds per epoch of the zoo's training recipe, AdderNet vs CNN per depth, measured in one run."""
    from . import bench

    rows = bench.training_rows(tuple(int(d) for d in depths), batch_size, repeats)
    _echo_rows(rows, as_json, {"machine": bench.machine_info("cpu"), "batch_size": batch_size})


@bench_cmd.command("minimal")
@click.option("--model", "model_name", default="ann20", show_default=True, help=MODEL_HELP)
@click.option("--n", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--eps", default="1/255", show_default=True, help="The budget of the fixed-eps reference cell.")
@click.option("--minimal", default="fmn", show_default=True, help="The minimal attack and its options.")
@click.option("--reference", default="autoattack", show_default=True, help="The fixed-eps attack it replaces.")
@click.option("--data", type=click.Path(), default=None, help="Directory of the named datasets [env ROBUSTADDER_DATA].")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_minimal(model_name, n, eps, minimal, reference, data, device, as_json) -> None:
    """Cost of a minimal attack (FMN) against the AutoAttack cell it replaces, both gradients, in one run."""
    from . import bench

    rows = bench.minimal_cost_rows(model_name, n, eps, minimal, reference, data, device=device)
    _echo_rows(rows, as_json, {"machine": bench.machine_info(device)})


@main.command("train")
@click.option("--arch", default="resnet20", show_default=True, type=click.Choice(["resnet20", "resnet32", "resnet56"]))
@click.option("--kind", required=True, type=click.Choice(["adder", "conv"]), help="AdderNet or its CNN counterpart.")
@click.option("--awn/--no-awn", default=False, show_default=True, help="Adaptive weight normalization.")
@click.option("--epochs", type=int, default=400, show_default=True, help="Length of the cosine schedule.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--eta", type=float, default=0.2, show_default=True, help="Adaptive learning-rate scale of adder layers.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--train-subset", type=int, default=None, help="Train on the first N training images only.")
@click.option("--test-subset", type=int, default=None, help="Measure on the first N test images only.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Final checkpoint path.")
@click.option("--resume", is_flag=True, help="Continue from OUT.state.")
@click.option("--stop-after", type=int, default=None, help="Stop (resumably) after this many epochs in this process.")
@click.option(
    "--dataset",
    default="cifar10",
    show_default=True,
    help="Training data: cifar10, cifar100, svhn, imagefolder:PATH (PATH/train, PATH/val; read at 32x32) or "
    "npz:DIR (train.npz, test.npz).",
)
@click.option("--flip/--no-flip", default=None, help="Horizontal-flip augmentation [default: on, off for svhn].")
@click.option("--awn-form", type=click.Choice(["norm", "standardize"]), default="norm", show_default=True,
              help="AWN: gamma W / rms(W) (weight normalization, the default since the ablation of "
                   "reports/awn-ablation), or gamma (W - mean) / std (every AWN model trained before).")  # fmt: skip
@click.option("--awn-eta", type=click.Choice(["raw", "normalized"]), default="raw", show_default=True,
              help="AWN: the adaptive learning rate scales the raw weight's gradient or the normalized weight's.")  # fmt: skip
@click.option("--awn-gain-decay/--no-awn-gain-decay", default=True, show_default=True, help="AWN: weight decay on the gains.")
@click.option("--awn-gain-init", default="4", show_default=True,
              help="AWN: gains start at a positive number (4: the template scale a model without AWN learns), at 1 "
                   "(one: every AWN model trained before) or at each filter's own scale (scale: the normalized weight "
                   "starts as the raw).")  # fmt: skip
@click.option("--data", type=click.Path(), default=None, help="Directory of the named datasets [env ROBUSTADDER_DATA].")
def train_cmd(arch, kind, awn, epochs, batch_size, lr, momentum, weight_decay, eta, seed, train_subset, test_subset, out,
              resume, stop_after, dataset, flip, awn_form, awn_eta, awn_gain_decay, awn_gain_init, data) -> None:  # fmt: skip
    """Train a CIFAR ResNet (adder or conv, ±AWN) with the official recipe; resumable each epoch.

    The model takes 32x32 images and normalizes inside with the dataset's statistics (measured on the
    training images for a dataset that states none); the checkpoint records the dataset, which eval,
    check and compare then use by default.
    """
    from .summary import ci_text
    from .train import TrainConfig, Trainer

    ctx = click.get_current_context()
    given = [p.name for p in ctx.command.params if p.name.startswith("awn_")  # the AWN knobs, as TrainConfig.validate
             and ctx.get_parameter_source(p.name) is not click.core.ParameterSource.DEFAULT]  # fmt: skip
    if given and not awn:  # also one that names the default: it says the user believes AWN is on
        raise UserError(f"--{given[0].replace('_', '-')} applies to AWN models: add --awn")
    config = TrainConfig(arch, kind, awn, epochs, batch_size, lr, momentum, weight_decay, eta, seed, flip=flip,
                         train_subset=train_subset, test_subset=test_subset, dataset=dataset, awn_form=awn_form,
                         awn_eta=awn_eta, awn_gain_decay=awn_gain_decay, awn_gain_init=awn_gain_init)  # fmt: skip
    trainer = Trainer(config, out, data)
    meta = trainer.run(resume=resume, stop_after=stop_after)
    if meta is None:
        click.echo(f"stopped after epoch {trainer.epoch}/{epochs}; continue with --resume (state: {trainer.state_path})")
        return
    click.echo(f"wrote {out}: {meta['arch']}, test accuracy {meta['accuracy']:.2f} % {ci_text(meta['accuracy_ci'])} "
               f"on {meta['accuracy_n']} images, "
               f"{meta['seconds_per_epoch']:.0f} s/epoch, weights sha256 {meta['weights_sha256'][:12]}")  # fmt: skip
    click.echo(f"metrics: {trainer.metrics_path}")


@main.command("sweep")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the plan (cells, done, skipped, cost estimate) and stop.")
@click.option(
    "--n", "--samples", "n", type=int, default=None, help="Override the sweep's number of test images (--samples under torchrun)."
)
@click.option("--store", type=click.Path(), default=None, help="Results store [env ROBUSTADDER_STORE, ./robustadder.sqlite].")
@click.option(
    "--dataset",
    default=None,
    help="Test data, overriding the sweep file's 'dataset =' (cifar10, cifar100, svhn, imagefolder:PATH or npz:PATH).",
)
@click.option("--data", type=click.Path(), default=None, help="Directory of the named datasets [env ROBUSTADDER_DATA].")
@click.option("--force", is_flag=True, help="Recompute cells that are already in the store.")
def sweep_cmd(config, dry_run, n, store, dataset, data, force) -> None:
    """Run every missing cell of a sweep grid (models x attacks x eps x settings x seeds).

    CONFIG is a sweep file or the name of a shipped preset (paper, eps, settings, smoke). Under torchrun the
    ranks share every cell's batches (one process per core or GPU); rank 0 reports.
    """
    from . import distributed
    from .report import PRESETS, preset_path
    from .store import Store, default_store_path
    from .sweep import load_sweep, plan_sweep, run_sweep

    if not Path(config).exists() and config in PRESETS:
        config = str(preset_path(config))
    cfg = load_sweep(config)
    devices = {s.device for s in cfg.settings}
    dist = distributed.init(devices.pop() if len(devices) == 1 else "cpu")
    if dist.active:
        cfg.settings = [replace(s, device=dist.device(s.device)) for s in cfg.settings]
    say = click.echo if dist.is_main else (lambda *a, **k: None)
    if n is not None:
        if n < 1:
            raise UserError("--n must be at least 1")
        cfg.n = n
    store_path = Path(store) if store else default_store_path()
    # plan before the store is created: a sweep that cannot run (data, models, device) writes nothing, and
    # a dry run never creates a store
    db = Store.open(store_path, readonly=True) if store_path.exists() else None
    try:
        plan = plan_sweep(cfg, data=data, store=db, dataset=dataset)
        cells = plan.cells
        skipped = sum(c.status == "skipped" for c in cells)
        for line in plan.summary_lines(db) + (plan.dry_run_lines(db) if dry_run else []):
            say(line)
        if dry_run:
            return
        if not cells:
            raise UserError(f"sweep {cfg.name}: the grid is empty (a settings axis with no values?)")
        if skipped == len(cells):
            raise UserError(f"sweep {cfg.name}: every model was skipped, nothing to run (see the reasons above)")
        if db is not None:
            db.close()
        db = Store.open(store_path)
        if db.run_id is None:
            db.start_run(f"sweep {config}", "mixed")
        run_sweep(plan, db, force=force, progress=dist.is_main)
        failed = [c for c in cells if c.status == "failed"]
        for c in failed:
            say(f"  failed: {c.model.label} {c.attack.label} bn={c.settings.bn} seed={c.settings.seed}: {c.reason}")
        n_done = sum(c.status == "done" for c in cells)
        say(f"sweep {cfg.name}: {n_done} cells done, {len(failed)} failed, {skipped} skipped; store {db.path}")
        if failed and not n_done:
            raise UserError(f"sweep {cfg.name}: every cell failed (reasons above)")
        if failed:
            sys.exit(1)  # some results exist; the failures are listed above and stored with their reasons
    finally:
        if db is not None:
            db.close()
        distributed.shutdown()


@main.command("report")
@click.option("--store", type=click.Path(), default=None, help="Results store [env ROBUSTADDER_STORE, ./robustadder.sqlite].")
@click.option("--preset", "presets", multiple=True, type=click.Choice(["paper", "eps", "settings", "smoke"]),
              help="Preset sweep(s) of attacks/ [default: every sweep the store records, and eval's cells].")  # fmt: skip
@click.option("--sweep", "sweeps", multiple=True, type=click.Path(dir_okay=False), help="Sweep file(s) instead of presets.")
@click.option("--format", "fmt", type=click.Choice(["csv", "latex", "md", "html"]), default="md", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to FILE instead of stdout.")
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="The number of test images the sweep was run with [default: the sweep file's n].")  # fmt: skip
@click.option("--intervals/--no-intervals", default=True, show_default=True,
              help="The 95 % Wilson interval beside every accuracy (md, latex, html); --no-intervals: means only.")
@click.option("--wide", is_flag=True, help="LaTeX: a table* fit to \\textwidth instead of \\columnwidth.")
@click.option("--checks", "with_checks", is_flag=True, help="Include the stored gradient-masking check reports (md, html).")
@click.option("--answer", "answers", multiple=True, type=click.Path(dir_okay=False),
              help="A 'compare --group --json' file whose class-level answer leads the page (md, html); two or more "
                   "also get a table and plot of each class's median minimal eps across them (e.g. depth 20 and 32).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="With two or more --answer: write the median-minimal-eps plot across them (PNG/PDF).")  # fmt: skip
def report_cmd(store, presets, sweeps, fmt, output, n, intervals, wide, with_checks, answers, plot_path) -> None:
    """Render robust-accuracy tables of sweeps from the store (CSV, LaTeX, Markdown, HTML page with plots).

    Reads the store only: the weights and the data need not be on this machine. A sweep is reported
    once 'robustadder sweep FILE' has run with this store (it records the sweep's grid and file). Without
    --sweep or --preset: every sweep the store records, and the cells 'robustadder eval' computed outside them.
    """
    from . import report as rep
    from .store import Store, default_store_path
    from .sweep import load_sweep

    sources = [Path(s) for s in sweeps] + [rep.preset_path(p) for p in presets]
    reads = [store or default_store_path(), *sources, *answers]
    guard_outputs(reads, output, plot_path)
    if plot_path and len(answers) < 2:
        raise UserError("--plot draws the answers side by side: pass two or more --answer")
    if with_checks and fmt not in ("md", "html"):
        raise UserError("--checks renders in --format md or html")
    if answers and fmt not in ("md", "html"):
        raise UserError("--answer renders in --format md or html")
    twice = _given_twice(answers, key=lambda a: Path(a).resolve())  # any spelling of the same file
    if twice is not None:
        raise UserError(f"--answer {twice} is given twice; pass each answer once")
    leads = [_read_answer(path) for path in answers]
    from .groups import across_html, across_markdown, plot_medians

    if len(sources) > 1 and fmt in ("csv", "latex"):
        raise UserError(f"--format {fmt} renders one table; pass one --preset or --sweep")
    configs = [load_sweep(path) for path in sources]
    dup = _given_twice([c.name for c in configs])
    if dup is not None:
        raise UserError(f"sweep '{dup}' is given twice; pass each sweep once")
    from .diagnostics import CheckReport

    reports, checks = [], []
    if sources or with_checks or not leads or Path(store or default_store_path()).exists():  # answers alone: no store
        with Store.open(store, readonly=True) as db:
            if sources:
                reports = [rep.build(db, cfg, n=n) for cfg in configs]
            else:  # what the store holds: every sweep it records, and the cells eval computed outside them
                stored, notes = rep.stored_sweeps(db)
                reports = [rep.build(db, cfg, n=n or rep.recorded_size(db, cfg)) for cfg in stored]
                reports += [rep.build(db, plan) for plan in rep.eval_plans(db)]
                for note in notes:
                    click.echo(f"note: {note}", err=True)
            checks = [CheckReport.from_json(c) for c in db.checks()] if with_checks else []
            if not sources and not reports and not checks and not leads:
                raise UserError(f"store {db.path} holds no sweep and no eval result yet: run 'robustadder sweep FILE' or "
                                "'robustadder eval' with it, or pass --sweep / --preset")  # fmt: skip
            if not sources:
                shown = [r.provenance["sweep"] for r in reports] + (["the stored checks"] if checks else [])
                click.echo("reporting what the store holds: " + (", ".join(shown) or "nothing beside --answer"), err=True)
    if len(reports) > 1 and fmt in ("csv", "latex"):
        raise UserError(f"--format {fmt} renders one table and the store holds {len(reports)}; pass one --preset or --sweep")
    if fmt == "html":
        toc = [(c.anchor, f"check: {c.model}") for c in checks]
        lead = "".join(a.to_html("answer" if i == 0 else f"answer-{i + 1}") for i, a in enumerate(leads))
        lead += across_html(leads) if len(leads) > 1 else ""
        text = rep.to_html(reports, title="robustadder report", extra_html="".join(c.to_html() for c in checks),
                           intervals=intervals, extra_toc=toc, lead_html=lead)  # fmt: skip
    else:
        text = "\n".join([*(a.render("md") for a in leads), *([across_markdown(leads)] if len(leads) > 1 else []),
                          *(rep.render(r, fmt, intervals=intervals, wide=wide) for r in reports),
                          *(c.to_markdown() for c in checks)])  # fmt: skip
    emit(text, output, reads, plot_path, lambda f: plot_medians(leads, format=f), nl=False)


@main.command("check", short_help="Gradient-masking checks with a verdict on the robustness claim.")
@click.option("--model", "model_name", required=True, help=MODEL_HELP)
@model_options
@click.option("--n", "n", type=int, default=200, show_default=True, help="Test images (first N, original order).")
@click.option(
    "--eps",
    default="auto",
    show_default=True,
    help="L-inf budget of the claim being checked; auto = the smallest of 0.5-16/255 where PGD leaves "
    "20-80 % of the clean-correct samples robust (8/255 is reported beside it).",
)
@click.option("--steps", type=int, default=20, show_default=True, help="PGD steps (doubled by the convergence check).")
@click.option("--queries", type=int, default=1000, show_default=True, help="Square Attack query budget.")
@click.option("--source", default=None, help="Transfer source [default: the zoo counterpart of the other kind].")
@settings_options("shuffle", "dtype")  # the checks shuffle themselves and compare float32 with float64
@data_options
@click.option("--store", type=click.Path(), default=None, help="Results store [env ROBUSTADDER_STORE, ./robustadder.sqlite].")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "latex"]), default="md", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--strict", is_flag=True, help="Exit with status 1 when a check fails.")
def check_cmd(model_name, weights, normalization, n, eps, steps, queries, source, settings, dataset, data, store, fmt, as_json,
              strict) -> None:  # fmt: skip
    """Gradient-masking checks (Carlini et al. 2019, Athalye et al. 2018) with a verdict on the claim."""
    from .diagnostics import run_checks
    from .models import as_loaded, module_input_shape

    if n < 1 or steps < 1 or queries < 1:
        raise UserError("--n, --steps and --queries must be at least 1")
    report = run_checks(
        as_loaded(model_name, weights=weights, normalization=normalization, input_shape=module_input_shape(dataset)),
        n=n, eps=eps, dataset=dataset, data=data, store=store, steps=steps, square_queries=queries, source=source,
        settings=settings, progress=not as_json or sys.stderr.isatty(),
    )  # fmt: skip
    if fmt == "html" and not as_json:  # a page of its own: the report package's page with this one section
        from .report import to_html

        click.echo(to_html([], title=f"robustadder check — {report.model}", extra_html=report.to_html()))
    else:
        click.echo(report.render("json" if as_json else fmt))
    if strict and report.failed:
        sys.exit(1)


def _given_twice(items: Sequence, key: Callable = lambda item: item):
    """The first item whose ``key`` an earlier item shares (what a command names twice), or None."""
    seen = set()
    for item in items:
        k = key(item)
        if k in seen:
            return item
        seen.add(k)
    return None


def _read_answer(path: str):
    """The class-level answer a ``compare --group --json`` wrote, or one line saying why the file is not one."""
    from .groups import GroupComparison

    try:
        with open(path, encoding="utf-8") as fh:
            return GroupComparison.from_json(json.load(fh))
    except OSError as exc:
        raise UserError(f"--answer {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"--answer {path} is not the JSON of 'compare --group --json' ({type(exc).__name__}: {exc})") from None


def guard_outputs(reads: Sequence[str | Path | None], output: str | None, plot: str | None = None) -> None:
    """Refuse, before any work starts, an output (``-o``, ``--plot``) that would destroy what the command reads.

    ``report -o s.sqlite`` once replaced the store it had just read with Markdown: every result lost;
    ``compare ann20 cnn20 -o models/ann20.pt`` would have replaced a zoo checkpoint reached by its name.
    ``reads`` are the resolved files and folders (:func:`_read_by`); :func:`emit` checks again when it writes.
    """
    check_output(output, reads, "-o")
    check_output(plot, reads, "--plot")
    if output and plot and Path(output).resolve() == Path(plot).resolve():
        raise UserError("-o and --plot name the same file; choose two")


def emit(text: str, output: str | None, reads: Sequence[str | Path | None], plot: str | None = None,
         figure: Callable[[str], bytes] | None = None, nl: bool = True) -> None:  # fmt: skip
    """Print ``text`` (``nl``: and a newline) or write it to ``output``; ``figure(format)`` to ``plot``; never over an input.

    A regular file is written atomically (a reader never sees half a file; an interruption leaves the old one), a
    special one in place (/dev/null stays a device, /dev/stdout into a pipe works).
    """
    if plot and figure is not None:
        write_output(plot, figure(Path(plot).suffix.lstrip(".").lower() or "png"), reads, "--plot")
    if output:
        write_output(output, text, reads)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=nl)


def _read_by(models: tuple[str, ...], dataset: str | None, data: str | None, store: str | Path, weights: str | None = None):
    """What a model-evaluating command reads, resolved to files and folders (zoo names to their weights)."""
    from .data import open_dataset
    from .models import model_inputs

    files: list[str | Path | None] = [store]
    for ref in models:
        files += model_inputs(ref, weights)
    if dataset is not None:
        files += open_dataset(dataset).inputs("test", data)
    else:  # the model's own dataset, known once loaded: every registered one is guarded
        from .data import DATASETS

        for d in DATASETS.values():
            files += d.inputs("test", data)
    return files


@main.command("compare")
@click.argument("models", nargs=-1)
@click.option("--group", "groups", multiple=True, metavar="LABEL=M1,M2,...",
              help="A class of models (e.g. training seeds of one recipe); two or more groups instead of MODELS.")
@click.option("--minimal", default="fmn", show_default=True,
              help="With --group: the minimal-perturbation attack and its options, e.g. fmn:steps=1000.")  # fmt: skip
@click.option(
    "--eps",
    "eps_list",
    default=",".join(["1/255", "2/255", "4/255", "8/255"]),
    show_default=True,
    help="Comma-separated L∞ budgets.",
)
@click.option(
    "--attack",
    "attacks",
    multiple=True,
    help="Attacks whose per-sample worst case is taken [default: pgd:steps=20,restarts=2 and autoattack; with --group "
    "pgd:steps=20,restarts=2, enveloping the minimal attack].",
)
@click.option("--label", "labels", multiple=True, help="A display name per model, in order.")
@click.option("--normalization", default=None, help="Input normalization of factory models (FILE.py:fn): cifar10, "
              "imagenet, none or MEAN,..:STD,.. [default: none].")  # fmt: skip
@click.option("--n", type=int, default=1000, show_default=True, help="The first N test images.")
@data_options
@click.option("--store", type=click.Path(), default=None, help="Results store [env ROBUSTADDER_STORE, ./robustadder.sqlite].")
@settings_options("bn", "shuffle")  # a comparison runs BN eval on the original order
@click.option(
    "--format", "fmt", type=click.Choice(["text", "md", "latex", "csv", "html", "json"]), default="text", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to FILE instead of stdout.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Robust accuracy vs eps with intervals (PNG/PDF)."
)
def compare_cmd(models, groups, minimal, eps_list, attacks, labels, normalization, n, dataset, data, store, settings, fmt,
                as_json, output, plot_path) -> None:  # fmt: skip
    """Is model A more robust than model B? Robust accuracy with intervals, paired tests, a verdict per pair.

    MODELS are zoo names, checkpoint files or factories FILE.py:fn (two or more; a factory file is your own
    code and runs when imported), evaluated on the same samples; cells are reused from the store, so a rerun
    is free and an interrupted run resumes. With --group LABEL=M1,M2,... (two or more groups, several training
    runs each) the answer is about the classes: minimal perturbations (FMN) enveloped with the fixed-eps
    attacks, robustness curves, and the class difference with an interval over training runs and samples.
    """
    # robustadder.compare is the function (the API); the module's names are imported from the module itself
    from .comparison import DEFAULT_ATTACKS, compare
    from .store import default_store_path

    fmt = "json" if as_json else fmt
    if n < 1:
        raise UserError(f"--n must be at least 1, not {n}")
    eps_values = [e.strip() for e in eps_list.split(",") if e.strip()]
    store_path = store or default_store_path()
    if groups:
        _compare_groups(models, groups, eps_values, attacks, labels, normalization, n, dataset, data, store_path,
                        dict(settings=settings, minimal=minimal), fmt, output, plot_path)  # fmt: skip
        return
    reads = _read_by(models, dataset, data, store_path)
    guard_outputs(reads, output, plot_path)
    # progress: the plan and a line per model and eps always (hours of work, often logged), bars on a terminal
    result = compare(
        list(models), normalization=normalization, eps=eps_values, attacks=list(attacks) or list(DEFAULT_ATTACKS),
        labels=list(labels) or None, n=n, dataset=dataset, data=data, store=store_path, settings=settings, progress=True,
    )  # fmt: skip
    emit(result.render(fmt), output, reads, plot_path, lambda f: result.plot(format=f))


def _compare_groups(models, groups, eps_values, attacks, labels, normalization, n, dataset, data, store_path, common, fmt,
                    output, plot_path) -> None:  # fmt: skip
    """Run `compare --group`: parse the groups, guard the outputs, run, render (robustadder.groups)."""
    from .groups import DEFAULT_GROUP_ATTACKS, compare_groups, parse_group, plot_curves

    if models:
        raise UserError("give either MODELS or --group, not both (every model of a class comparison is in a group)")
    if labels or normalization:
        raise UserError("--label and --normalization apply to MODELS; a group names its models itself")
    parsed = [parse_group(g) for g in groups]
    dup = _given_twice([label for label, _ in parsed])
    if dup is not None:
        raise UserError(f"group {dup} is given twice")
    reads = _read_by(tuple(m for _, members in parsed for m in members), dataset, data, store_path)
    guard_outputs(reads, output, plot_path)
    if fmt not in ("text", "md", "json", "html"):
        raise UserError(f"--format {fmt} is not available with --group (text, md, json, html)")
    result = compare_groups(dict(parsed), eps=eps_values, attacks=list(attacks) or list(DEFAULT_GROUP_ATTACKS), n=n,
                            dataset=dataset, data=data, store=store_path, progress=True, **common)  # fmt: skip
    emit(result.render(fmt), output, reads, plot_path, lambda f: plot_curves(result, format=f))

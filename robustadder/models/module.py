"""Any ``nn.Module`` as a model the product can evaluate: conversion, input convention, identity.

Every model the engine sees takes images in [0, 1] and returns logits, and knows its input shape (for the
cost estimate and the operation counts). A user's module is put behind that convention by
:class:`InputAdapter` — the normalization (mean, std) it was trained with happens inside, so attacks still
measure eps in pixel space. Foreign adder layers are converted first (:func:`robustadder.nn.convert`), so
the fast kernels and both gradient modes apply, and the conversion is reported, never silent.

Factories: ``FILE.py:factory`` imports the user's own Python file (it runs as code, like any script the
user runs) and ``package.module:factory`` imports an installed module; the factory is called without
arguments and must return an ``nn.Module``. Weights are read with ``weights_only=True`` like every
checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..data import DATASETS, Dataset, ImageSet, open_dataset
from ..data.files import DEFAULT_SHAPE as DEFAULT_FOLDER_SHAPE
from ..errors import UserError
from ..fileio import note_input
from ..nn import convert
from .checkpoint import (
    LoadedModel,
    build_model,
    check_finite,
    infer_arch,
    load_strictly,
    read_checkpoint_file,
    unwrap,
    weights_sha256,
)
from .registry import REGISTRY, architecture, infer_registered
from .resnet import IMAGENET_MEAN, IMAGENET_STD
from .spec import ModelSpec, describe

MODULE_INPUT_SHAPE = (3, 32, 32)  # what a module takes when neither the caller nor a dataset says


def named_normalizations() -> dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None]:
    """Normalizations by name: ``none``, the statistics of each registered dataset, and ``imagenet``."""
    named = {name: d.normalization for name, d in DATASETS.items() if d.normalization is not None}
    return {"none": None, **named, "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}


Normalization = str | tuple[Sequence[float], Sequence[float]] | None


def parse_normalization(value: Normalization, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``None`` / a preset name / ``"m,m,m:s,s,s"`` / ``(mean, std)`` → per-channel (mean, std) or None."""
    if value is None:
        return None
    if isinstance(value, str):
        key = value.strip().lower()
        named = named_normalizations()
        if key in named:
            pair = named[key]
        elif ":" in key:
            mean_s, _, std_s = key.partition(":")
            try:
                pair = (tuple(float(v) for v in mean_s.split(",")), tuple(float(v) for v in std_s.split(",")))
            except ValueError:
                raise UserError(f"normalization '{value}' is not 'MEAN,...:STD,...' (numbers)") from None
        else:
            raise UserError(f"unknown normalization '{value}': use {', '.join(named)} or 'MEAN,...:STD,...'")
    else:
        try:
            mean, std = value
            pair = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
        except (TypeError, ValueError):
            raise UserError(f"normalization must be (mean, std) sequences, not {value!r}") from None
    if pair is None:
        return None
    mean, std = pair
    if len(mean) == 1:
        mean, std = mean * channels, std * channels if len(std) == 1 else std
    if len(mean) != channels or len(std) != channels:
        raise UserError(f"normalization has {len(mean)} means and {len(std)} stds for {channels} input channels")
    if any(s <= 0 for s in std):
        raise UserError("normalization std values must be positive")
    return tuple(mean), tuple(std)


class InputAdapter(nn.Module):
    """A user's module behind the product's input convention: [0, 1] images in, logits (N, K) out."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], normalization=None) -> None:
        super().__init__()
        self.model = model
        self._input_shape = tuple(int(v) for v in input_shape)
        self.normalized = normalization is not None
        mean, std = normalization if normalization is not None else ((0.0,) * self._input_shape[0], (1.0,) * self._input_shape[0])
        self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the images the model takes."""
        return self._input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalized:
            x = (x - self.input_mean) / self.input_std
        out = self.model(x)
        if not isinstance(out, torch.Tensor):  # e.g. torchvision's InceptionOutputs / HF outputs
            out = getattr(out, "logits", out[0] if isinstance(out, (tuple, list)) else out)
        return out.flatten(1)


def _probe(adapter: InputAdapter, source: str) -> int:
    """Run two blank images through the model: it must work at this input shape and return (2, K) logits."""
    param = next(iter(adapter.parameters()), None)
    x = torch.zeros(2, *adapter.input_shape, dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")  # fmt: skip
    was = adapter.training
    adapter.eval()
    try:
        with torch.no_grad():
            out = adapter(x)
    except Exception as exc:
        reason = str(exc).split("\n")[0][:200] or type(exc).__name__
        raise UserError(f"{source} fails on inputs of shape {tuple(x.shape[1:])}: {type(exc).__name__}: {reason}") from None
    finally:
        adapter.train(was)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"{source} returns {shape} for 2 images; a classifier returns logits (N, classes)")
    return int(out.shape[1])


def from_module(
    model: nn.Module,
    *,
    normalization: Normalization = None,
    input_shape: Sequence[int] = (3, 32, 32),
    name: str | None = None,
    arch: str | None = None,
    family: str | None = None,
    num_classes: int | None = None,
    source: str = "memory",
    copy_module: bool = True,
) -> LoadedModel:
    """Wrap any ``nn.Module`` as an evaluation-ready :class:`LoadedModel`.

    ``normalization``: ``(mean, std)``, a preset (``cifar10``, ``imagenet``) or None for a model that takes
    [0, 1] inputs itself. The module is copied first: evaluating freezes parameters, sets eval mode and
    converts foreign adder layers (listed in ``meta['converted']``), and none of that may happen to the
    object the caller goes on training or using (``copy_module=False`` for a module built just for this,
    e.g. by a factory or the registry: a ResNet-50 copy is 100 MB for nothing). The weights' sha256 is that
    of the module's own state dict, so the same weights saved to a file and loaded again have the same
    identity.
    """
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, nn.Module):
        raise UserError(f"a model must be an nn.Module, a zoo name or a checkpoint path, not {type(model).__name__}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"input_shape must be (channels, height, width), not {tuple(input_shape)}")
    label = name or type(model).__name__
    if isinstance(model, torch.jit.ScriptModule):  # its layers cannot be inspected, converted or set per attack
        raise UserError(
            f"model {label} is a TorchScript module; pass the eager nn.Module (robustadder sets adder gradients and "
            "BN modes layer by layer)"
        )
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise UserError(f"model {label} has parameters on the meta device (shapes without values); load its weights first")
    if copy_module:
        model = copy.deepcopy(model)
    converted = convert(model)
    norm = parse_normalization(normalization, shape[0])
    adapter = InputAdapter(model, shape, norm)
    classes = num_classes or _probe(adapter, f"model {label}")  # a registered architecture's classes are known
    state = model.state_dict()
    check_finite(state, f"model {label}")
    digest = weights_sha256(state)
    meta: dict[str, Any] = {"converted": [c.name for c in converted], "converted_from": sorted({c.was for c in converted})}
    if norm is not None:
        meta["input_normalization"] = {"mean": list(norm[0]), "std": list(norm[1])}
    spec = describe(adapter, arch or type(model).__name__, family or arch or type(model).__name__, classes, shape)
    adapter.eval()
    return LoadedModel(adapter, label, spec, digest, source, meta)


def conversion_note(loaded: LoadedModel) -> str | None:
    """One line saying which layers were converted, for the CLI and API to print (None: nothing converted)."""
    names = loaded.meta.get("converted") or []
    if not names:
        return None
    kinds = ", ".join(loaded.meta.get("converted_from") or [])
    return f"{loaded.name}: converted {len(names)} adder layer(s) ({kinds}) to robustadder's Adder2d (same weights and outputs)"


# -- factories ------------------------------------------------------------------------------------------
def split_factory(ref: str) -> tuple[str, str, bool] | None:
    """``(target, factory, is_file)`` of ``FILE.py:factory`` / ``package.module:factory``, else None.

    The one reading of a factory reference, for the CLI, the API and sweep files alike: a target ending in
    ``.py`` or holding a path separator is a file, a dotted name of identifiers a module.
    """
    target, sep, attr = ref.rpartition(":")
    if not (sep and target and attr.isidentifier()):
        return None
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if not is_file and not all(part.isidentifier() for part in target.split(".")):
        return None
    return target, attr, is_file


def is_factory_ref(ref: str) -> bool:
    """Whether ``ref`` names a factory (and is not an existing file whose name has a colon)."""
    return split_factory(ref) is not None and not Path(ref).exists()


def _one_line(exc: BaseException) -> str:
    """An exception from the user's own code as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    note_input(path, "a model's code")
    key = "robustadder_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path} cannot be imported as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses and pickling look classes up by module name
    sys.path.insert(0, str(path.resolve().parent))  # the file's own sibling imports (e.g. 'import adder')
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(key, None)
        raise UserError(f"importing {path.name} failed: {_one_line(exc)}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def load_factory(
    ref: str,
    *,
    weights: str | os.PathLike | None = None,
    normalization: Normalization = None,
    input_shape: Sequence[int] = (3, 32, 32),
    name: str | None = None,
) -> LoadedModel:
    """``FILE.py:factory`` / ``package.module:factory`` [+ weights] → a :class:`LoadedModel`."""
    parts = split_factory(ref)
    if parts is None:
        raise UserError(f"'{ref}' is not FILE.py:factory or package.module:factory")
    target, attr, is_file = parts
    if is_file:
        module = _import_file(Path(target).expanduser())
        where = Path(target).name
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UserError(f"cannot import module '{target}': {exc}") from None
        where = target
    factory: Callable[[], Any] | None = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"{where} has no callable '{attr}' (the factory that builds the model)")
    try:
        model = factory()
    except Exception as exc:
        raise UserError(f"{where}:{attr}() failed: {_one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{where}:{attr}() returned {type(model).__name__}, not an nn.Module")
    source = f"{where}:{attr}"
    if weights is not None:
        path = Path(weights).expanduser()
        state, _meta = unwrap(read_checkpoint_file(path), str(path))
        check_finite(state, str(path))
        load_strictly(model, state, f"{path.name} does not fit {source}", hint="")
        source = f"{source} + {path.name}"
    label = name or (Path(weights).stem if weights is not None else attr)
    return from_module(model, normalization=normalization, input_shape=input_shape, name=label, arch=f"{where}:{attr}",
                       source=source, copy_module=False)  # fmt: skip


def announce(loaded: LoadedModel) -> None:
    """Say on stderr, once per loaded model, which adder layers were converted."""
    note = conversion_note(loaded)
    if note and not loaded.meta.get("announced"):
        print(note, file=sys.stderr)
        loaded.meta["announced"] = True


def check_fits(loaded: LoadedModel, dataset: ImageSet) -> None:
    """The model takes the data's images and predicts its classes (else one line, before any work)."""
    data = f"{dataset.dataset} ({Path(dataset.source).name})"
    want = tuple(getattr(loaded.model, "input_shape", dataset.image_shape))
    if dataset.image_shape != want:
        raise UserError(f"{loaded.name} takes images of shape {want}, but {data} has {dataset.image_shape}")
    classes = int(loaded.arch.num_classes)
    if dataset.num_classes is not None and classes != dataset.num_classes:
        raise UserError(f"{loaded.name} predicts {classes} classes, but {data} has {dataset.num_classes}")
    if int(dataset.y.max()) >= classes:
        raise UserError(f"{loaded.name} predicts {classes} classes, but {data} has labels up to {int(dataset.y.max())}")


def opened_dataset(dataset: str | os.PathLike | Dataset | None) -> Dataset | None:
    """``dataset`` opened once per command (None stays None: the models' own dataset is the default).

    Opening a file-based dataset reads its folder (an image folder lists its class folders); entry points
    open it here and pass the :class:`Dataset` on to :func:`module_input_shape` and :func:`evaluation_images`.
    """
    return open_dataset(dataset) if dataset is not None else None


def module_input_shape(
    dataset: str | os.PathLike | Dataset | None, data: str | os.PathLike | ImageSet | None = None
) -> tuple[int, int, int] | None:
    """The input shape to give a user's module (which does not state one) for evaluation on ``dataset``.

    The images' shape when ``data`` is an :class:`ImageSet`, else the dataset's fixed image shape;
    3×224×224 for a resizable one (an image folder); None (3×32×32) when no dataset is named.
    """
    if isinstance(data, ImageSet):
        return data.image_shape
    if dataset is None:
        return None
    return open_dataset(dataset).input_shape or DEFAULT_FOLDER_SHAPE


def default_dataset(models: Sequence[LoadedModel]) -> str | None:
    """The registered dataset the models' checkpoints say they were trained on, when they all agree."""
    names = {m.meta.get("dataset") for m in models}
    if len(names) == 1:
        name = names.pop()
        if isinstance(name, str) and name in DATASETS:
            return name
    return None


def evaluation_images(
    models: Sequence[LoadedModel],
    dataset: str | os.PathLike | Dataset | None = None,
    data: str | os.PathLike | ImageSet | None = None,
    n: int | None = None,
) -> ImageSet:
    """The test images every entry point evaluates on, checked to fit every model.

    ``data`` is an :class:`ImageSet` (used as it is) or the data directory of a registered dataset;
    ``dataset`` names one (default: the one the models' checkpoints were trained on, else CIFAR-10). A
    resizable dataset (an image folder) is read at the models' input size, which must then be one size.
    """
    if isinstance(data, ImageSet):
        named = open_dataset(dataset).name if dataset is not None else None
        if named is not None and named != data.dataset:
            raise UserError(f"data is {data.dataset} but dataset is {named}: give one of them")
        images = data.first(n)
    else:
        spec = open_dataset(dataset if dataset is not None else default_dataset(models))
        shape = None
        if spec.input_shape is None:
            shapes = sorted({tuple(getattr(m.model, "input_shape", DEFAULT_FOLDER_SHAPE)) for m in models})
            if len(shapes) > 1:
                raise UserError(f"the models take images of different sizes ({', '.join(map(str, shapes))}); "
                                f"{spec.title} is read at one size, so evaluate them separately")  # fmt: skip
            shape = shapes[0] if shapes else None
        images = spec.load("test", data, n=n, image_shape=shape)
    for model in models:
        check_fits(model, images)
    return images


def load_registered(state: dict[str, torch.Tensor], arch: str, source: str, name: str) -> LoadedModel:
    """Weights of a registered architecture (VGG-small, ImageNet ResNets, ...) → a loaded model.

    Built from the registry with the classes of the weights' classifier, loaded strictly, wrapped with the
    architecture's input shape and training normalization.
    """
    entry = architecture(arch)
    classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else entry.num_classes
    model = entry.factory(num_classes=classes)
    load_strictly(model, state, f"{source} does not fit architecture {arch}")
    return from_module(model, normalization=(entry.mean, entry.std), input_shape=entry.input_shape, name=name, arch=arch,
                       family=entry.family, num_classes=classes, source=source, copy_module=False)  # fmt: skip


def load_checkpoint(path: str | os.PathLike, arch: str | None = None, name: str | None = None) -> LoadedModel:
    """Load any supported checkpoint file into an evaluation-ready model (CPU, eval mode)."""
    source = str(path)
    obj = read_checkpoint_file(path)
    state, meta = unwrap(obj, source)
    check_finite(state, source)
    digest = weights_sha256(state)
    recorded = meta.get("weights_sha256")
    if recorded and recorded != digest:
        raise UserError(f"{source}: weights do not match the sha256 recorded in its metadata; the file is corrupt")
    # --arch wins over the metadata (another tool's metadata may name its own architectures); else the keys decide
    named = arch or (meta.get("arch") if meta.get("arch") in REGISTRY else None)
    entry = architecture(named) if named else None
    if entry is None:
        registered = infer_registered(state)
    else:
        registered = None if entry.cifar_resnet else entry.name
    if registered:
        loaded = load_registered(state, registered, source, name or Path(path).name)
        loaded.meta.update(meta)
        loaded.weights_sha256 = digest  # of the file's tensors, as for every checkpoint
        return loaded
    if entry is None:
        spec = infer_arch(state, source)
    else:  # the name gives the structure; the classifier (or the metadata) how many classes
        classes = int(state["fc.weight"].shape[0]) if arch and "fc.weight" in state else meta.get("num_classes")
        spec = ModelSpec.cifar_resnet(entry.spec.depth, entry.kind, entry.awn, int(classes or entry.num_classes))
    model = build_model(state, spec, source, meta)
    model.eval()
    return LoadedModel(model, name or Path(path).name, spec, digest, source, meta)

"""The model zoo: names for checkpoints, described by data in ``models/zoo.toml``.

As in timm, architectures live in code and weights are described by data (source, sha256, recorded
accuracy). A zoo name resolves to a verified local file — the project's own checkpoints sit next to the
manifest, downloaded ones in ``$ROBUSTADDER_HOME/weights`` — and then loads like any user checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

from .._compat import tomllib
from ..errors import UserError
from ..fetch import download, file_digest, weights_dir
from ..fileio import note_input
from ..resources import zoo_dir
from .checkpoint import LoadedModel, parse_arch
from .module import MODULE_INPUT_SHAPE, Normalization, from_module, is_factory_ref, load_checkpoint, load_factory, split_factory
from .registry import REGISTRY, create_model
from .spec import ModelSpec

DEFAULT_MANIFEST = zoo_dir() / "zoo.toml"


def manifest_path() -> Path:
    """The zoo manifest in use: ``$ROBUSTADDER_ZOO`` or the project's ``models/zoo.toml``."""
    return Path(os.environ.get("ROBUSTADDER_ZOO") or DEFAULT_MANIFEST)


@dataclass(frozen=True)
class ZooEntry:
    """One named model of the zoo."""

    name: str
    arch: str
    sha256: str
    description: str = ""
    url: str | None = None
    path: str | None = None
    filename: str | None = None
    accuracy: float | None = None
    accuracy_source: str = ""
    dataset: str = "cifar10"
    manifest_dir: Path = Path(".")

    @property
    def spec(self) -> ModelSpec:
        """Architecture of the entry."""
        return parse_arch(self.arch)

    @property
    def source(self) -> str:
        """Where the weights come from, for listings."""
        return self.url or f"models/{self.path}"

    def local_path(self) -> Path:
        """Where the weights are (or will be, once downloaded)."""
        if self.path:
            return self.manifest_dir / self.path
        return weights_dir() / (self.filename or Path(self.url or self.name).name)

    def present(self) -> bool:
        """Whether the weights are on this machine (not verified)."""
        return self.local_path().is_file()

    def ensure(self) -> Path:
        """Path of verified weights, downloading them first if needed."""
        path = self.local_path()
        if not path.is_file():
            if not self.url:
                raise UserError(f"zoo model '{self.name}': weights file {path} is missing (restore it from git)")
            # a checkpoint holds the parameters and buffers (float64 at most) and a little metadata
            download(self.url, path, digest=self.sha256, max_bytes=16 * count_parameters(self.arch) + 16 * 2**20)
        got = file_digest(path)
        if got != self.sha256:
            fix = (
                "delete the file and rerun to fetch it again"
                if self.url
                else f"it ships with the project: restore it (git checkout -- models/{self.path})"
                if self.manifest_dir.name != "_zoo"
                else "it ships with robustadder: reinstall the package"
            )
            raise UserError(f"zoo model '{self.name}': {path} has sha256 {got[:12]}…, expected {self.sha256[:12]}…; {fix}")
        return path

    def load(self) -> LoadedModel:
        """Verified, evaluation-ready model."""
        loaded = load_checkpoint(self.ensure(), arch=self.arch, name=self.name)
        loaded.meta.setdefault("zoo", self.name)
        return loaded


def load_zoo(manifest: str | os.PathLike | None = None) -> dict[str, ZooEntry]:
    """Read the manifest; a broken manifest is a user error (it may be ``$ROBUSTADDER_ZOO``)."""
    path = Path(manifest) if manifest else manifest_path()
    if not path.is_file():
        return {}
    try:
        note_input(path, "the zoo manifest")
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"zoo manifest {path} is not valid TOML: {exc}") from None
    entries: dict[str, ZooEntry] = {}
    models = data.get("models") or {}
    if not isinstance(models, dict):
        raise UserError(f"zoo manifest {path}: 'models' must be a table of [models.<name>] entries")
    for name, raw in models.items():
        if not isinstance(raw, dict):
            raise UserError(f"zoo manifest {path}: model '{name}' must be a table ([models.{name}])")
        fields: dict[str, Any] = {k: v for k, v in raw.items() if k in ZooEntry.__dataclass_fields__ and k != "manifest_dir"}
        if "arch" not in fields or "sha256" not in fields or not (fields.get("url") or fields.get("path")):
            raise UserError(f"zoo manifest {path}: model '{name}' needs arch, sha256 and url or path")
        for key, value in fields.items():
            expected = (int, float) if key == "accuracy" else str
            if not isinstance(value, expected) or isinstance(value, bool):
                kind = "number" if key == "accuracy" else "string"
                raise UserError(f"zoo manifest {path}: model '{name}': {key} must be a {kind}")
        if len(fields["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in fields["sha256"].lower()):
            raise UserError(f"zoo manifest {path}: model '{name}': sha256 must be 64 hex digits")
        entry = ZooEntry(name=name, manifest_dir=path.parent, **fields)
        if entry.url:  # downloaded into the weights cache under this name: it must stay inside the cache
            cached = entry.filename or Path(entry.url).name
            if not _plain_file_name(cached):
                raise UserError(
                    f"zoo manifest {path}: model '{name}': filename {cached!r} must be a plain file name (no folder, "
                    "no '..'): downloads stay inside the weights cache"
                )
        entries[name] = entry
        try:
            parse_arch(fields["arch"])
        except UserError as exc:
            raise UserError(f"zoo manifest {path}: model '{name}': {exc}") from None
    return entries


def _plain_file_name(name: str) -> bool:
    """A name that stays in its folder: no separator, not '.', '..' or empty, no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in ("/", "\\", "\0"))


def count_parameters(arch: str) -> int:
    """Number of trainable parameters of an architecture."""
    return sum(p.numel() for p in create_model(arch).parameters())


def model_inputs(name_or_path: str, weights: str | os.PathLike | None = None) -> list[Path]:
    """The files loading ``name_or_path`` reads (a zoo entry's weights, a checkpoint, a factory's code).

    Nothing is loaded: a command checks its outputs against these before any work starts.
    """
    files = [Path(weights).expanduser()] if weights else []
    zoo = load_zoo()
    if name_or_path in zoo:
        return [*files, zoo[name_or_path].local_path(), manifest_path()]
    if is_factory_ref(name_or_path):
        target, _attr, is_file = split_factory(name_or_path) or ("", "", False)
        return [*files, Path(target).expanduser()] if is_file else files
    return [*files, Path(name_or_path).expanduser()]


def resolve_model(
    name_or_path: str,
    arch: str | None = None,
    *,
    weights: str | os.PathLike | None = None,
    normalization: Normalization = None,
    input_shape: Sequence[int] | None = None,
) -> LoadedModel:
    """A zoo name, a checkpoint path or a factory (``FILE.py:fn``, ``pkg.mod:fn``) → a loaded model.

    The one entry point the CLI and sweep files use. ``weights`` and ``normalization`` apply to factories
    only (a zoo model or checkpoint carries its own); given for anything else they are an error rather
    than silently ignored.
    """
    zoo = load_zoo()
    if name_or_path not in zoo and is_factory_ref(name_or_path):
        if arch:
            raise UserError("--arch applies to checkpoint files, not to a model factory")
        return load_factory(
            name_or_path, weights=weights, normalization=normalization, input_shape=input_shape or MODULE_INPUT_SHAPE
        )
    if name_or_path in REGISTRY and name_or_path not in zoo and not Path(name_or_path).exists():
        if weights is None:
            raise UserError(f"architecture '{name_or_path}' needs its trained weights: --weights FILE")
        if normalization is not None or arch:
            raise UserError(
                f"architecture '{name_or_path}' carries its own normalization and structure; drop --normalization / --arch"
            )
        return load_checkpoint(Path(weights).expanduser(), arch=name_or_path)
    if weights is not None or normalization is not None:
        raise UserError(f"--weights and --normalization apply to a model factory (FILE.py:fn) or an architecture name, "
                        f"not to '{name_or_path}'")  # fmt: skip
    if name_or_path in zoo:
        if arch:
            raise UserError(f"--arch applies to checkpoint files, not to zoo model '{name_or_path}'")
        return zoo[name_or_path].load()
    path = Path(name_or_path).expanduser()
    if path.exists():
        return load_checkpoint(path, arch=arch)
    if path.suffix or os.sep in name_or_path:
        raise UserError(f"checkpoint not found: {name_or_path}")
    known = ", ".join(zoo) or "none"
    raise UserError(f"unknown model '{name_or_path}': not a zoo name (known: {known}) nor an existing file")


def as_loaded(
    model: Any,
    *,
    arch: str | None = None,
    weights: str | os.PathLike | None = None,
    normalization: Normalization = None,
    input_shape: Sequence[int] | None = None,
) -> LoadedModel:
    """What every entry point accepts as a model, loaded.

    A zoo name, a checkpoint path, a factory, an ``nn.Module`` or a :class:`LoadedModel`. Converted adder
    layers are announced by :func:`announce` once the inputs have been validated, so that an error stays
    the only line on stderr. ``input_shape`` (C, H, W) is what a module or factory takes — a module does
    not say it; entry points pass the dataset's (:func:`module_input_shape`) — default 3×32×32.
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, nn.Module):
        if arch or weights is not None:
            raise UserError("arch and weights apply to files; load the weights into the nn.Module yourself")
        loaded = from_module(model, normalization=normalization, input_shape=input_shape or MODULE_INPUT_SHAPE)
    elif isinstance(model, (str, os.PathLike)):
        loaded = resolve_model(str(model), arch=arch, weights=weights, normalization=normalization, input_shape=input_shape)
    else:
        raise UserError(f"a model is a zoo name, a checkpoint path, FILE.py:factory or an nn.Module, not {type(model).__name__}")
    return loaded

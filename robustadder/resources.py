"""Where the files that ship with robustadder are, in a source checkout and in an installed wheel.

The repository keeps the zoo (``models/``: manifest and the project's checkpoints) and the sweep presets
(``attacks/``) at its top level; a wheel installs them as ``robustadder/_zoo`` and
``robustadder/_presets`` (pyproject.toml). Asking here, never computing ``parents[2]``, is what lets a
plain ``pip install`` find its own zoo and presets instead of an empty zoo.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent


def shipped_dir(installed: str, checkout: str) -> Path:
    """The installed data directory when it exists (a wheel), else the checkout's directory."""
    inside = PACKAGE / installed
    return inside if inside.is_dir() else CHECKOUT / checkout


def zoo_dir() -> Path:
    """The directory of the shipped zoo manifest and checkpoints."""
    return shipped_dir("_zoo", "models")


def presets_dir() -> Path:
    """The directory of the shipped sweep presets."""
    return shipped_dir("_presets", "attacks")

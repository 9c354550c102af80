"""robustadder: adversarial-robustness evaluation of Adder Neural Networks.

The Python API mirrors the CLI: ``robustadder.evaluate(model, ...)`` returns an ``Evaluation`` (per-attack
summaries, rendering, and the per-sample rows as a pandas DataFrame in ``.frame``), ``robustadder.compare`` a
``Comparison``; both take one ``Settings``. ``robustadder.models`` loads checkpoints and zoo models;
``robustadder.nn`` holds the adder layer.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting (libgomp's default) steal the cores of any other process on
# the machine: with a second job running, an evaluation on this 2-core CPU ran 3x slower than with
# sleeping waits (23.3 s vs 7.7 s, 500 images), while alone the two policies time the same (bench
# kernels). It has to be set before torch loads OpenMP; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__

__all__ = ["__version__", "compare", "evaluate"]


def __getattr__(name: str):
    """The API functions, imported on first use.

    ``robustadder --help`` and ``import robustadder.cli`` then start without importing torch (16-20 s on a
    cold, busy 2-core machine).
    """
    if name == "evaluate":
        from .api import evaluate

        return evaluate
    if name == "compare":
        from .comparison import compare

        return compare
    raise AttributeError(f"module 'robustadder' has no attribute {name!r}")

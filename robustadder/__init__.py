"""robustadder: adversarial-robustness evaluation of Adder Neural Networks.

The Python API mirrors the CLI: ``robustadder.evaluate(model, ...)`` returns a pandas DataFrame of
per-sample results; ``robustadder.models`` loads checkpoints and zoo models; ``robustadder.nn`` holds
the adder layer.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import evaluate  # noqa: E402

__all__ = ["__version__", "evaluate"]

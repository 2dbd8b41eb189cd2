"""Let mmengine checkpoints load under torch >= 2.6 (``torch.load(weights_only=True)``).

mmengine 0.10 calls ``torch.load(filename, map_location=...)`` without ``weights_only``; since
torch 2.6 that means ``weights_only=True``, and its restricted unpickler refuses what an
mmengine checkpoint holds besides tensors: the ``MessageHub`` state (``HistoryBuffer`` objects
backed by numpy arrays) and numpy scalars (metrics, seeds). So ``load_from`` and ``resume`` fail
with ``UnpicklingError`` in mmseg's stock ``tools/train.py``.

Importing ``disalign_seg`` (configs do it through ``custom_imports``, which ``Config.fromfile``
runs before the runner exists) allow-lists exactly those types with
``torch.serialization.add_safe_globals``. Nothing else is allowed, so a checkpoint carrying any
other object is still refused. Preferred over ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which
turns the protection off for every load in the process.

``HistoryBuffer.__getstate__`` stores its statistics methods, which pickle writes as
``getattr(HistoryBuffer, 'min')``. Allowing ``builtins.getattr`` itself would let a checkpoint
fetch any attribute of any allowed object, so the name is mapped to ``_history_buffer_getattr``,
which only returns the statistics methods of ``HistoryBuffer``.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = ["mmengine_checkpoint_safe_globals", "allow_mmengine_checkpoints"]

# HistoryBuffer's built-in statistics (HistoryBuffer._set_default_statistics).
_DEFAULT_STATISTICS = frozenset({"min", "max", "current", "mean"})


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` in checkpoints: statistics methods of HistoryBuffer only."""
    # The defaults are only put into _statistics_methods when a first buffer is created.
    allowed = _DEFAULT_STATISTICS | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"checkpoint asks for getattr({obj!r}, {name!r}); disalign_seg only allows the "
        "statistics methods of mmengine's HistoryBuffer"
    )


def mmengine_checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The globals an mmengine checkpoint needs, in ``add_safe_globals`` form."""
    # numpy 1.x pickles its internals under numpy.core, numpy 2.x under numpy._core.
    core = "numpy._core" if hasattr(np, "_core") and np.__version__ >= "2" else "numpy.core"
    multiarray = np.core.multiarray if core == "numpy.core" else np._core.multiarray
    safe: List[Union[Callable, Tuple[Callable, str]]] = [
        HistoryBuffer,
        (_history_buffer_getattr, "builtins.getattr"),
        np.ndarray,
        np.dtype,
        (multiarray._reconstruct, f"{core}.multiarray._reconstruct"),
        (multiarray.scalar, f"{core}.multiarray.scalar"),
    ]
    # numpy >= 1.25 may pickle dtypes through their classes (numpy.dtypes.Float64DType, ...).
    if hasattr(np, "dtypes"):
        for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_):
            safe.append(type(np.dtype(t)))
    return safe


def allow_mmengine_checkpoints() -> None:
    """Allow-list the types of mmengine checkpoints for ``torch.load(weights_only=True)``."""
    if hasattr(torch.serialization, "add_safe_globals"):  # torch >= 2.4
        torch.serialization.add_safe_globals(mmengine_checkpoint_safe_globals())

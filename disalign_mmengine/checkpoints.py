"""Let mmengine checkpoints load under torch >= 2.6 (``torch.load(weights_only=True)``).

mmengine 0.10 calls ``torch.load(filename, map_location=...)`` without ``weights_only``; since
torch 2.6 that means ``weights_only=True``, and its restricted unpickler refuses what an
mmengine checkpoint holds besides tensors: the ``MessageHub`` state (``HistoryBuffer`` objects
backed by numpy arrays) and numpy scalars (metrics, seeds). So ``load_from`` and ``resume`` fail
with ``UnpicklingError`` in the stock ``tools/train.py`` of MMSegmentation and MMPretrain.

``allow_mmengine_checkpoints`` is the one process-wide change the OpenMMLab plugins make:
importing ``disalign_seg`` or ``disalign_cls`` (configs do it through ``custom_imports``, which
``Config.fromfile`` runs before the runner exists) calls it, and it adds exactly those types to
torch's ``weights_only`` allow-list (``torch.serialization.add_safe_globals``); nothing else is
patched or replaced. Any other object in a checkpoint is still refused. Preferred over
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which turns the protection off for every load in the
process.

``HistoryBuffer.__getstate__`` stores its statistics methods, which pickle writes as
``getattr(HistoryBuffer, 'min')``. Allowing ``builtins.getattr`` itself would let a checkpoint
fetch any attribute of any allowed object, so the name is mapped to ``_history_buffer_getattr``,
which only returns the statistics methods of ``HistoryBuffer``.

Unreadable checkpoints: an empty or truncated file (an interrupted save or copy) makes
``torch.load`` raise a bare ``EOFError`` or a zip-reader error, and a file holding other objects
makes it suggest ``weights_only=False``, which would run code from a file nobody vouched for.
``load_local_checkpoint`` (our loader of ``model.stage1_checkpoint`` and of the checkpoint the
recipe guard reads on ``--resume``) and ``check_checkpoint_file`` (called by
``DisAlignCheckpointHook`` before ``--resume`` or ``load_from`` loads a file) turn these into an
error naming the file, the config keys that can name it and the fix. mmengine's own loader is
left as it is: these two places see every checkpoint a DisAlign config loads.

Checkpoints named by URL: mmengine's ``http(s)://`` loader is torch.hub's
``load_state_dict_from_url``, which (torch 2.13 included) calls ``torch.load`` with
``weights_only=False``, i.e. unpickles whatever the server sent. ``download_checkpoint`` only
downloads, into the same cache (``$TORCH_HOME/hub/checkpoints/<file name>``, so a file mmengine
already downloaded is reused and vice versa); the caller then loads the local file with
``load_local_checkpoint`` under torch's default ``weights_only=True`` and the allow-list above.
The calibration stage loads ``model.stage1_checkpoint`` URLs this way; ``load_from`` URLs still
go through mmengine's loader.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any, Callable, List, Optional, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import HistoryBuffer, print_log

from disalign_core import is_complete_checkpoint

__all__ = [
    "CheckpointReadError",
    "allow_mmengine_checkpoints",
    "check_checkpoint_file",
    "download_checkpoint",
    "load_local_checkpoint",
    "mmengine_checkpoint_safe_globals",
    "torch_hub_cache_file",
]

# The config keys and flags through which a checkpoint path reaches the loader.
CHECKPOINT_KEYS = (
    "load_from (tools/test.py: the checkpoint argument), model.stage1_checkpoint, or with "
    "--resume the path in <work_dir>/last_checkpoint"
)

# HistoryBuffer's built-in statistics (HistoryBuffer._set_default_statistics).
_DEFAULT_STATISTICS = frozenset({"min", "max", "current", "mean"})


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` in checkpoints: statistics methods of HistoryBuffer only."""
    # The defaults are only put into _statistics_methods when a first buffer is created.
    allowed = _DEFAULT_STATISTICS | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"checkpoint asks for getattr({obj!r}, {name!r}); the allow-list of "
        "allow_mmengine_checkpoints admits only the statistics methods of mmengine's HistoryBuffer"
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
    """Allow-list the types of mmengine checkpoints for ``torch.load(weights_only=True)``.

    The only process-wide change of importing ``disalign_seg`` / ``disalign_cls``: it adds
    ``mmengine_checkpoint_safe_globals()`` (mmengine's ``HistoryBuffer``, a getattr restricted
    to its statistics methods, numpy arrays, dtypes and scalars) to torch's safe globals, so
    that the stock ``tools/train.py --resume`` and ``load_from`` read mmengine checkpoints under
    torch >= 2.6. A no-op before torch 2.4, whose ``torch.load`` does not restrict by default.
    """
    if hasattr(torch.serialization, "add_safe_globals"):  # torch >= 2.4
        torch.serialization.add_safe_globals(mmengine_checkpoint_safe_globals())


class CheckpointReadError(RuntimeError):
    """A checkpoint file that exists but cannot be read (empty, truncated, not a checkpoint)."""


def _explain(filename: str, err: Optional[BaseException]) -> str:
    """The error text for ``filename``; ``err`` None: the file is incomplete (not loaded)."""
    if err is None:
        what = "not a complete zip archive"
    else:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        what = f"{type(err).__name__}{': ' + first if first else ''}"
    size = os.path.getsize(filename) if os.path.exists(filename) else 0
    if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err):
        return (
            f"cannot load the checkpoint {filename!r} ({what}): it holds Python objects other "
            "than tensors and mmengine's training state, which torch refuses to unpickle "
            f"(weights_only=True). It was named by {CHECKPOINT_KEYS}. Fix: from a trusted "
            "environment re-save only its tensors (torch.save({'state_dict': "
            "model.state_dict()}, path)) and point the key to that file; do not load it with "
            "weights_only=False, which runs code from the file"
        )
    return (
        f"cannot read the checkpoint {filename!r} ({size} bytes; {what}): the file is empty, "
        "truncated (an interrupted save or copy) or not a PyTorch checkpoint. It was named by "
        f"{CHECKPOINT_KEYS}. Fix: write it again (re-run the training that saved it, or copy "
        "it again) or point the key to another checkpoint; to resume from an earlier one, "
        "delete this file and write the earlier file's path into <work_dir>/last_checkpoint. "
        "Do not retry with weights_only=False: a damaged or foreign file is no safer unpickled"
    )


def load_local_checkpoint(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine's local checkpoint loader with errors that name the file, the keys and the fix.

    Loads exactly as mmengine's ``load_from_local`` (``torch.load`` with torch's default
    ``weights_only``), so the allow-list above still applies.
    """
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(
            f"checkpoint {filename!r} does not exist. It was named by {CHECKPOINT_KEYS}. Fix: "
            "train the stage that writes it first, or give the path of an existing checkpoint"
        )
    try:
        return torch.load(filename, map_location=map_location)
    except Exception as err:  # torch raises EOFError, RuntimeError, UnpicklingError, KeyError...
        raise CheckpointReadError(_explain(filename, err)) from err


def check_checkpoint_file(filename: str) -> None:
    """Raise ``CheckpointReadError`` (file, config keys, fix) when the local checkpoint
    ``filename`` is empty or cut off (``disalign_core.is_complete_checkpoint``); reads only the
    zip directory, nothing is unpickled."""
    if not os.path.isfile(os.path.expanduser(filename)):
        load_local_checkpoint(filename)  # raises the FileNotFoundError with the fix
    if not is_complete_checkpoint(os.path.expanduser(filename)):
        raise CheckpointReadError(_explain(os.path.expanduser(filename), None))


def torch_hub_cache_file(url: str) -> str:
    """The file torch.hub (and so mmengine's ``http(s)://`` loader) keeps the download of ``url``
    in: ``<torch.hub.get_dir()>/checkpoints/<last part of the URL's path>``, by default
    ``$TORCH_HOME/hub/checkpoints/``. Keyed by that file name only, not by host or contents."""
    name = os.path.basename(urlparse(url).path)
    if not name:
        raise ValueError(f"the checkpoint URL {url!r} does not end in a file name")
    return os.path.join(torch.hub.get_dir(), "checkpoints", name)


def download_checkpoint(url: str, config_key: str = CHECKPOINT_KEYS) -> str:
    """Download ``url`` into torch.hub's cache unless a file of that name is already there.

    As mmengine's ``load_from_http``: in a distributed run, rank 0 downloads first and the
    other ranks wait, then fetch it themselves only if their machine has no copy. Nothing is
    unpickled here; load the returned file with ``load_local_checkpoint``.

    Args:
        url (str): an ``http://`` or ``https://`` URL.
        config_key (str): the config key that named it, for the error message.

    Returns:
        str: the local file (``torch_hub_cache_file(url)``).
    """
    cached = torch_hub_cache_file(url)

    def fetch() -> None:
        if os.path.exists(cached):
            return
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        print_log(f"Downloading {url} to {cached}", logger="current")
        try:  # writes a temporary file next to it and renames it when complete
            torch.hub.download_url_to_file(url, cached, progress=sys.stderr.isatty())
        except Exception as err:  # urllib's HTTPError / URLError, OSError
            raise RuntimeError(
                f"cannot download the checkpoint {url} ({config_key}): "
                f"{type(err).__name__}: {err}. Fix: check the URL and the network, or download "
                f"the file yourself and set {config_key} to its local path"
            ) from err

    rank, world_size = get_dist_info()
    if rank == 0:
        fetch()
    if world_size > 1:
        barrier()
        if rank > 0:
            fetch()
    return cached

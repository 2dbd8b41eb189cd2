"""Let mmengine checkpoints load under torch >= 2.6 without importing MMSegmentation.

The allow-list itself lives in ``disalign_seg/checkpoint_compat.py`` (see its docstring: which
types an mmengine checkpoint holds, and why ``builtins.getattr`` is mapped to a narrow
stand-in). That module imports only torch, numpy and mmengine, but ``import
disalign_seg.checkpoint_compat`` would first run ``disalign_seg/__init__``, which imports mmseg:
an MMPretrain user need not have it. So, unless ``disalign_seg`` is already imported, the one
file is loaded on its own, under a private module name. Both plugins ship in the same
distribution, so the file is always there.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

__all__ = ["allow_mmengine_checkpoints", "install_checkpoint_errors"]

_PRIVATE_NAME = "disalign_cls._seg_checkpoint_compat"


def _seg_checkpoint_compat() -> ModuleType:
    """``disalign_seg.checkpoint_compat``, imported without ``disalign_seg/__init__``."""
    if "disalign_seg" in sys.modules:
        from disalign_seg import checkpoint_compat

        return checkpoint_compat
    if _PRIVATE_NAME in sys.modules:
        return sys.modules[_PRIVATE_NAME]
    # find_spec of a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec("disalign_seg")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "disalign_cls needs disalign_seg/checkpoint_compat.py (same distribution, "
            "`pip install -e .`) to let mmengine checkpoints load under torch >= 2.6"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "checkpoint_compat.py")
    file_spec = importlib.util.spec_from_file_location(_PRIVATE_NAME, path)
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[_PRIVATE_NAME] = module
    file_spec.loader.exec_module(module)
    return module


def allow_mmengine_checkpoints() -> None:
    """Allow-list the types of mmengine checkpoints for ``torch.load(weights_only=True)``."""
    _seg_checkpoint_compat().allow_mmengine_checkpoints()


def install_checkpoint_errors() -> None:
    """Unreadable checkpoint files raise an error naming the file, the config keys and the fix
    (``disalign_seg.checkpoint_compat.install_checkpoint_errors``, where that version has it)."""
    install = getattr(_seg_checkpoint_compat(), "install_checkpoint_errors", None)
    if install is not None:
        install()

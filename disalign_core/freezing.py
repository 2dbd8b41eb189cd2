"""Freezing for the calibration stage, framework-free.

"Frozen means frozen": a frozen parameter gets no gradient, and the layers whose behaviour
depends on the training mode (BatchNorm and its synchronised variants, InstanceNorm, dropout)
stay in eval mode inside frozen parts even after ``model.train()``, so running statistics
do not move and dropout is off. Trainers call ``model.train()`` on their own (detectron2's
SimpleTrainer, mmengine's train loop); the lock makes that harmless.

Two locks (``freeze_except(..., lock=...)``):

- ``"module"``: every largest subtree without trainable parameters stays in eval mode as a
  whole (``module.training`` is False). Simple, and right where a frozen module's own
  train/eval switch means nothing but norm/dropout (segmentation).
- ``"norm"``: frozen subtrees follow ``model.train()``, only their norm/dropout layers are kept
  in eval mode. Needed where a frozen module must still act as in training: detectron2's
  frozen RPN proposes with its training-time counts while the detector trains.

The lock lives in the ``train`` method of the model passed in (not of the frozen modules), and
finds the frozen subtrees by name each time: a module that is replaced after freezing (mmengine's
``revert_sync_batchnorm`` swaps SyncBN for BN after the model is built) is locked as well.
"""

from __future__ import annotations

import types
from typing import Callable, List, Sequence

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from .calibration import DisAlignCalibration

__all__ = [
    "freeze_except",
    "freeze_all_but_calibration",
    "is_eval_locked",
    "is_frozen",
    "LOCKS",
    "MODE_DEPENDENT_LAYERS",
]

LOCKS = ("module", "norm")

# Layers that compute differently in training mode. _NormBase covers BatchNorm1d/2d/3d,
# SyncBatchNorm, detectron2's NaiveSyncBatchNorm, mmengine's _BatchNormXd and _InstanceNorm
# (whose running statistics, when tracked, would move); _DropoutNd every dropout variant.
# GroupNorm, LayerNorm and detectron2's FrozenBatchNorm2d act the same in both modes.
MODE_DEPENDENT_LAYERS = (_NormBase, _DropoutNd)


def is_frozen(module: nn.Module) -> bool:
    """Whether ``module`` has no trainable parameter (True for a module without parameters)."""
    return not any(p.requires_grad for p in module.parameters())


def is_eval_locked(module: nn.Module) -> bool:
    """Whether ``freeze_except(..., lock="module")`` locked this whole module in eval mode."""
    return getattr(module, "_disalign_eval_locked", False)


def _lock_frozen(model: nn.Module) -> None:
    """Put the frozen parts of ``model`` (names saved by ``freeze_except``) in eval mode."""
    roots, lock = model._disalign_frozen_roots, model._disalign_lock
    for name in roots:
        root = model.get_submodule(name)
        if lock == "module":
            root._disalign_eval_locked = True  # a replaced root is marked again
            nn.Module.train(root, False)
            continue
        for m in root.modules():
            if isinstance(m, MODE_DEPENDENT_LAYERS):
                m.train(False)


def _train_with_frozen_locked(self: nn.Module, mode: bool = True) -> nn.Module:
    # Replaces nn.Module.train on the frozen model: the usual recursive switch, then the lock.
    nn.Module.train(self, mode)
    _lock_frozen(self)
    return self


def freeze_except(
    model: nn.Module, keep: Callable[[str, nn.Module], bool], lock: str = "module"
) -> List[str]:
    """Freeze every parameter of ``model`` except those of the modules selected by ``keep``.

    Args:
        model (nn.Module): the model to freeze in place.
        keep (callable): ``keep(qualified_name, module) -> bool``; all parameters under a
            selected module stay trainable.
        lock (str): what stays in eval mode after ``model.train()``: "module" (each largest
            subtree without trainable parameters, as a whole) or "norm" (only the
            ``MODE_DEPENDENT_LAYERS`` inside such subtrees). See the module docstring.

    Returns:
        list[str]: names of the parameters left trainable (empty means nothing to train).
    """
    if lock not in LOCKS:
        raise ValueError(f"lock must be one of {LOCKS}, got {lock!r}")
    kept_prefixes = [name for name, m in model.named_modules() if keep(name, m)]

    def is_kept(name: str) -> bool:  # a parameter's or a module's qualified name
        return any(p == "" or name == p or name.startswith(p + ".") for p in kept_prefixes)

    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(is_kept(name))
        if param.requires_grad:
            trainable.append(name)

    # The largest subtrees without trainable parameters (by qualified name).
    def frozen_roots(prefix: str, module: nn.Module) -> Sequence[str]:
        if is_kept(prefix):  # e.g. a parameter-free layer inside a kept module trains with it
            return []
        if is_frozen(module):
            return [prefix]
        return [
            root
            for name, child in module.named_children()
            for root in frozen_roots(f"{prefix}.{name}" if prefix else name, child)
        ]

    model._disalign_frozen_roots = [
        root for name, child in model.named_children() for root in frozen_roots(name, child)
    ]
    model._disalign_lock = lock
    model.train = types.MethodType(_train_with_frozen_locked, model)
    _lock_frozen(model)
    return trainable


def freeze_all_but_calibration(model: nn.Module, lock: str = "module") -> List[str]:
    """Freeze everything except the parameters of every ``DisAlignCalibration`` in ``model``.

    Args:
        lock (str): "module" or "norm", see ``freeze_except``.

    Raises:
        ValueError: if ``model`` contains no ``DisAlignCalibration`` with trainable parameters.
    """
    trainable = freeze_except(model, lambda _, m: isinstance(m, DisAlignCalibration), lock)
    if not trainable:
        raise ValueError(
            f"{type(model).__name__} has no DisAlign calibration parameters to train: "
            "is the DisAlign head/predictor configured?"
        )
    return trainable

"""Freezing for the calibration stage, framework-free.

"Frozen means frozen": a frozen parameter gets no gradient, and a module without trainable
parameters stays in eval mode even after ``model.train()``, so BatchNorm running statistics
and dropout behave as at test time. Trainers call ``model.train()`` on their own (detectron2's
SimpleTrainer, mmengine's train loop); the lock makes that harmless.
"""
from __future__ import annotations

import types
from typing import Callable, List

from torch import nn

from .calibration import DisAlignCalibration

__all__ = ["freeze_except", "freeze_all_but_calibration", "is_eval_locked"]


def _train_locked(self: nn.Module, mode: bool = True) -> nn.Module:
    # Replaces nn.Module.train on a frozen module: it and its children stay in eval mode.
    return nn.Module.train(self, False)


def is_eval_locked(module: nn.Module) -> bool:
    """Whether ``freeze_except`` locked this module in eval mode."""
    return getattr(module, "_disalign_eval_locked", False)


def freeze_except(model: nn.Module, keep: Callable[[str, nn.Module], bool]) -> List[str]:
    """Freeze every parameter of ``model`` except those of the modules selected by ``keep``.

    Args:
        model (nn.Module): the model to freeze in place.
        keep (callable): ``keep(qualified_name, module) -> bool``; all parameters under a
            selected module stay trainable.

    Returns:
        list[str]: names of the parameters left trainable (empty means nothing to train).
    """
    kept_prefixes = [name for name, m in model.named_modules() if keep(name, m)]

    def is_kept(param_name: str) -> bool:
        return any(p == "" or param_name == p or param_name.startswith(p + ".") for p in kept_prefixes)

    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(is_kept(name))
        if param.requires_grad:
            trainable.append(name)

    # Lock the largest subtrees without trainable parameters in eval mode.
    def lock(module: nn.Module) -> None:
        if any(p.requires_grad for p in module.parameters()):
            for child in module.children():
                lock(child)
            return
        module.train = types.MethodType(_train_locked, module)
        module._disalign_eval_locked = True
        module.train()

    for child in model.children():
        lock(child)
    return trainable


def freeze_all_but_calibration(model: nn.Module) -> List[str]:
    """Freeze everything except the parameters of every ``DisAlignCalibration`` in ``model``.

    Raises:
        ValueError: if ``model`` contains no ``DisAlignCalibration`` with trainable parameters.
    """
    trainable = freeze_except(model, lambda _, m: isinstance(m, DisAlignCalibration))
    if not trainable:
        raise ValueError(
            f"{type(model).__name__} has no DisAlign calibration parameters to train: "
            "is the DisAlign head/predictor configured?"
        )
    return trainable

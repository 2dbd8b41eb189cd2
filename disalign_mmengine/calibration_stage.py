"""The calibration stage (stage 2) of an OpenMMLab model: freezing and the stage-1 weights.

``CalibrationStageMixin`` goes first in the bases of a segmentor or classifier
(``DisAlignEncoderDecoder(CalibrationStageMixin, EncoderDecoder)``). It adds two arguments:

- ``freeze_for_calibration``: freeze everything but the DisAlign calibration when the model is
  built (core ``freeze_all_but_calibration``). The runner builds the model before it wraps it
  in DistributedDataParallel (``Runner.__init__``: build_model, then wrap_model), so DDP
  registers only the calibration parameters and reports no frozen one as unused; a hook
  (``before_train``) would come too late for DDP. Frozen parts get no gradient and stay in
  eval mode when mmengine's loop calls ``model.train()`` (BatchNorm statistics, dropout). The
  optimizer still receives every parameter (mmengine's constructor passes them all), but
  torch's optimizers skip parameters whose ``.grad`` is None, so neither momentum nor weight
  decay moves a frozen one.
- ``stage1_checkpoint``: the stage-1 weights, loaded by ``init_weights``. The runner calls
  ``init_weights`` when training starts, before it loads ``load_from`` or resumes
  (``Runner.train``: ``_init_model_weights``, then ``load_or_resume``). So ``tools/train.py
  cfg`` starts stage 2 from stage 1, and ``tools/train.py cfg --resume`` then overwrites
  everything with the run's own last checkpoint (model, optimizer, iteration): the framework's
  plain ``--resume`` works because ``load_from`` stays unset. ``tools/test.py`` does not call
  ``init_weights``: testing needs only the checkpoint it is given.

Loading the stage-1 checkpoint (``load_stage1_checkpoint``) is stricter than mmengine's
``load_checkpoint(strict=False)``, which only logs "do not match exactly" (as it does for every
correct stage-2 load, the calibration being new). Every frozen weight must come from stage 1,
so after a non-strict load (mmengine's key handling: ``module.`` stripped, the DisAlign heads'
class-count check in their ``_load_from_state_dict`` still runs) the core rule
``check_stage1_keys`` applies: anything missing or unexpected other than the calibration, or a
tensor of another shape, is a ``Stage1CheckpointMismatch`` naming the checkpoint,
``model.stage1_checkpoint``, the keys and the likely cause, raised before the first iteration.
The one exception: a BatchNorm ``num_batches_tracked`` absent from the checkpoint (checkpoints
of old torch versions lack it) is ignored, as mmengine does. It is only a counter, used for the
running averages' momentum when ``momentum=None`` while training; frozen BatchNorm is in eval
mode and never reads it. A correct load logs one line: the new calibration keys (identity start)
and that every other tensor came from the checkpoint.

A URL (``https://download.openmmlab.com/...``, mmseg's model zoo) is downloaded into torch.hub's
cache (``$TORCH_HOME/hub/checkpoints/<file name>``, the file mmengine would use) and loaded with
torch's default ``weights_only=True`` (``disalign_mmengine.checkpoints``); the log names the
local file, its size and time. That cache is keyed by file name only: a file of that name
already there is used whatever its host or contents. Other schemes (``s3://``,
``open-mmlab://``, ...) go through mmengine's ``CheckpointLoader``.

``DisAlignBatchSizeHook`` logs the total batch and the learning rate a stage-2 run really
starts from (after mmengine's ``auto_scale_lr``) and how to change them.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from disalign_core import freeze_all_but_calibration
from disalign_core.stage1_checkpoint import (
    Stage1CheckpointMismatch,
    check_stage1_keys,
    describe_local_file,
    is_calibration_key,
)

from .checkpoints import download_checkpoint, load_local_checkpoint

__all__ = [
    "CalibrationStageMixin",
    "DisAlignBatchSizeHook",
    "batch_size_message",
    "load_stage1_checkpoint",
]

CONFIG_KEY = "model.stage1_checkpoint"
# How many tensors of another shape an error lists.
_SHOWN = 5


def _read_checkpoint(checkpoint: str, config_key: str) -> Any:
    """The checkpoint's contents; a URL through torch.hub's cache with ``weights_only=True``, a
    local file with ``load_local_checkpoint``."""
    if str(checkpoint).startswith(("http://", "https://")):
        local = download_checkpoint(checkpoint, config_key)
        print_log(
            f"DisAlign stage 2: {config_key}={checkpoint} resolved to the local file "
            f"{describe_local_file(local)}. torch.hub's cache keys downloads by file name only "
            "(not host or contents): a file of that name already there is used as it is; "
            "delete it to download again",
            logger="current",
        )
        return load_local_checkpoint(local, map_location="cpu")
    if "://" not in str(checkpoint):  # a local file: errors that name the file and the fix
        return load_local_checkpoint(checkpoint, map_location="cpu")
    # Other schemes (s3://, ...) through mmengine's loaders.
    return CheckpointLoader.load_checkpoint(checkpoint, map_location="cpu", logger="current")


def _state_dict_of(checkpoint: Any, name: str, config_key: str) -> "OrderedDict[str, Any]":
    """The model weights of a checkpoint, ``module.`` prefixes stripped (as mmengine)."""
    if not isinstance(checkpoint, dict):
        raise Stage1CheckpointMismatch(
            f"the stage-1 checkpoint {name} ({config_key}) holds a {type(checkpoint).__name__}, "
            "not a dict of weights. Fix: set it to a checkpoint saved by mmengine (or mmcv), or "
            "to a file of torch.save(model.state_dict())"
        )
    state_dict = checkpoint.get("state_dict", checkpoint)
    metadata = getattr(state_dict, "_metadata", None)
    state_dict = OrderedDict((re.sub(r"^module\.", "", k), v) for k, v in state_dict.items())
    if metadata is not None:  # module versions (BatchNorm reads its own), keyed as the tensors
        state_dict._metadata = OrderedDict(
            (re.sub(r"^module(\.|$)", "", k), v) for k, v in metadata.items()
        )
    return state_dict


def _load_non_strict(
    model: nn.Module, state_dict: "OrderedDict[str, Any]"
) -> Tuple[List[str], List[str], List[str]]:
    """mmengine's ``load_state_dict`` (each module's ``_load_from_state_dict``, model wrappers
    unwrapped), returning what it would only log.

    Returns:
        (missing keys, unexpected keys, other errors): torch reports a tensor of another shape
        as an error and leaves the model's tensor as it was.
    """
    missing: List[str] = []
    unexpected: List[str] = []
    errors: List[str] = []
    metadata = getattr(state_dict, "_metadata", None)
    state_dict = OrderedDict(state_dict)  # BatchNorm may add num_batches_tracked to it
    if metadata is not None:
        state_dict._metadata = metadata

    def load(module: nn.Module, prefix: str = "") -> None:
        if is_model_wrapper(module) or isinstance(module, BaseTTAModel):
            module = module.module
        local_metadata = {} if metadata is None else metadata.get(prefix[:-1], {})
        module._load_from_state_dict(
            state_dict, prefix, local_metadata, True, missing, unexpected, errors
        )
        for name, child in module._modules.items():
            if child is not None:
                load(child, prefix + name + ".")

    load(model)
    return missing, unexpected, errors


def _shape_mismatches(
    model_state: Dict[str, torch.Tensor], state_dict: Dict[str, Any]
) -> List[str]:
    return [
        f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(model_state[k].shape)} in the model"
        for k, v in state_dict.items()
        if k in model_state
        and isinstance(v, torch.Tensor)
        and tuple(v.shape) != tuple(model_state[k].shape)
    ]


def load_stage1_checkpoint(
    model: nn.Module, checkpoint: str, config_key: str = CONFIG_KEY
) -> List[str]:
    """Load a stage-1 checkpoint into a stage-2 model; refuse one that does not fit.

    Args:
        model (nn.Module): the stage-2 model (the calibration absent from the checkpoint).
        checkpoint (str): local path or URL (``http(s)://``, ``s3://``, ``open-mmlab://``...).
        config_key (str): the config key that named it, for messages.

    Returns:
        list[str]: the calibration keys the checkpoint lacked (they keep their identity start).

    Raises:
        Stage1CheckpointMismatch: a key other than the calibration's missing from the
            checkpoint, one the model lacks, or a tensor of another shape.
        ValueError: a DisAlign head given a classifier of another class count (the head's own
            check, with the key).
    """
    state_dict = _state_dict_of(_read_checkpoint(checkpoint, config_key), checkpoint, config_key)
    model_state = model.state_dict()
    mismatched = _shape_mismatches(model_state, state_dict)
    missing, unexpected, errors = _load_non_strict(model, state_dict)
    # Only a counter, absent from checkpoints of old torch versions; frozen BatchNorm is in
    # eval mode and never reads it (mmengine ignores it too).
    counters = [
        k for k in missing if k.endswith(".num_batches_tracked") and not is_calibration_key(k)
    ]
    missing = [k for k in missing if k not in counters]
    errors = [e for e in errors if not e.startswith("size mismatch for ")]
    shapes = ""
    if mismatched or errors:
        more = len(mismatched) - _SHOWN
        shown = "; ".join(mismatched[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        shapes = f"Of another shape ({len(mismatched)} tensors): {shown}." if mismatched else ""
        shapes += "".join(f" {e.strip()}" for e in errors)
    try:
        new = check_stage1_keys(
            missing,
            unexpected,
            checkpoint=checkpoint,
            config_key=config_key,
            model_keys=len(model_state),
        )
    except Stage1CheckpointMismatch as err:
        if shapes:
            raise Stage1CheckpointMismatch(f"{err} {shapes}") from None
        raise
    if shapes:
        raise Stage1CheckpointMismatch(
            f"the stage-1 checkpoint {checkpoint} ({config_key}) does not fit the stage-2 "
            "model, so stage 2 would calibrate on top of frozen layers that kept their random "
            f"initialisation. {shapes} Likely cause: the checkpoint of another width, depth or "
            f"number of classes of this architecture. Fix: set {config_key} to the stage-1 "
            "checkpoint of this config's model (same architecture, head and classes)."
        )
    loaded = len(set(model_state) & set(state_dict))
    note = (
        f"; {len(counters)} BatchNorm num_batches_tracked counters absent from it keep their "
        "value (unused by frozen BatchNorm)"
        if counters
        else ""
    )
    print_log(
        f"DisAlign stage 2: the stage-1 checkpoint {checkpoint} ({config_key}) fits the model: "
        f"{loaded} tensors loaded from it, everything but the calibration{note}; new, at their start (the identity, or the "
        "prior margin with margin_init='prior'): "
        f"{', '.join(new) if new else 'none (the checkpoint has a calibration)'}",
        logger="current",
    )
    return new


class CalibrationStageMixin:
    """Stage-2 behaviour for an mmengine ``BaseModel`` subclass (put it first in the bases).

    Args:
        freeze_for_calibration (bool): freeze all but the DisAlign calibration parameters
            (default True). False builds the plain model (e.g. to train a calibrated head
            jointly).
        stage1_checkpoint (str, optional): the stage-1 checkpoint (path or URL), loaded by
            ``init_weights`` with ``load_stage1_checkpoint``: the calibration, absent from it,
            keeps its identity start; any other key missing or unexpected, or a tensor of
            another shape, is an error (``Stage1CheckpointMismatch``). Config key
            ``model.stage1_checkpoint``; on the command line
            ``--cfg-options model.stage1_checkpoint=PATH``.
        *args, **kwargs: the model's own arguments. Without a DisAlign head, freezing is a
            ValueError saying so.
    """

    # The config key of the head that must calibrate (named in errors); set by each model.
    calibrated_head_key = "model.head"

    def __init__(
        self,
        *args,
        freeze_for_calibration: bool = True,
        stage1_checkpoint: Optional[str] = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.freeze_for_calibration = freeze_for_calibration
        self.stage1_checkpoint = stage1_checkpoint
        self.trainable_parameter_names: List[str] = []
        if freeze_for_calibration:
            try:
                self.trainable_parameter_names = freeze_all_but_calibration(self)
            except ValueError as err:
                raise ValueError(
                    f"{err} Nothing to train in stage 2 (model.freeze_for_calibration=True). Fix: "
                    f"set {self.calibrated_head_key}.type to the DisAlign head (with "
                    "calibration=dict(use_magnitude=True or use_margin=True)), or "
                    "model.freeze_for_calibration=False to build the plain model"
                ) from None

    def init_weights(self) -> None:
        """mmengine's initialisation, then the stage-1 weights from ``stage1_checkpoint``."""
        super().init_weights()
        if self.stage1_checkpoint:
            print_log(
                f"DisAlign stage 2: loading the stage-1 checkpoint {self.stage1_checkpoint} "
                f"({CONFIG_KEY})",
                logger="current",
            )
            load_stage1_checkpoint(self, self.stage1_checkpoint)
        elif self.freeze_for_calibration:
            print_log(
                "DisAlign stage 2 without model.stage1_checkpoint: the frozen weights are "
                "random unless load_from or --resume provides them",
                logger="current",
                level=logging.WARNING,
            )


def _config_lr(cfg: Any) -> Optional[float]:
    """The optimizer LR the config gives (``optim_wrapper.optimizer.lr``), before scaling."""
    try:
        return float(cfg["optim_wrapper"]["optimizer"]["lr"])
    except (KeyError, TypeError, ValueError):
        return None


def _initial_lrs(optim_wrapper: Any) -> List[float]:
    """The start LR of every parameter group: ``initial_lr`` (set by mmengine's parameter
    schedulers, the value they decay from), else ``lr``."""
    wrappers = list(optim_wrapper.values()) if hasattr(optim_wrapper, "values") else [optim_wrapper]
    return [
        float(group.get("initial_lr", group["lr"]))
        for wrapper in wrappers
        for group in wrapper.optimizer.param_groups
    ]


def batch_size_message(
    per_process: int,
    world_size: int,
    config_lr: Optional[float],
    used_lrs: List[float],
    auto_scale_lr: Optional[dict],
    by_epoch: bool = False,
) -> Tuple[str, int]:
    """The stage-2 log line on the total batch and the learning rate, and its log level.

    Args:
        per_process (int): images per process and iteration (``train_dataloader.batch_size``).
        world_size (int): number of processes.
        config_lr (float, optional): ``optim_wrapper.optimizer.lr`` of the config.
        used_lrs (list[float]): the start LR of each parameter group, after mmengine's
            ``auto_scale_lr`` (``Runner.scale_lr``) if enabled.
        auto_scale_lr (dict, optional): the config's ``auto_scale_lr``.
        by_epoch (bool): the schedule counts epochs (the same images at any batch), not
            iterations (fewer images on a smaller batch).

    Returns:
        (str, int): the message; ``logging.INFO``, or ``logging.WARNING`` when the total batch
        differs from ``auto_scale_lr.base_batch_size`` and the LR is not scaled.
    """
    total = per_process * world_size
    used = sorted(set(used_lrs))
    used_text = ", ".join(f"{lr:g}" for lr in used) if used else "unknown"
    head = (
        f"DisAlign stage 2: total batch {total} images per iteration = {per_process} per "
        f"process (train_dataloader.batch_size) x {world_size} process"
        f"{'es' if world_size != 1 else ''}; learning rate {used_text}"
    )
    base = (auto_scale_lr or {}).get("base_batch_size")
    enabled = bool((auto_scale_lr or {}).get("enable", False))
    lr_text = f"{config_lr:g}" if config_lr is not None else "the config's LR"
    if base is None:
        return f"{head} (optim_wrapper.optimizer.lr, no auto_scale_lr in the config).", logging.INFO
    if total == base:
        return (
            f"{head}: the recipe's batch (auto_scale_lr.base_batch_size={base}) and LR "
            f"{lr_text}, unscaled.",
            logging.INFO,
        )
    schedule = (
        "The schedule keeps its epochs (the recipe's images, in another number of iterations)."
        if by_epoch
        else "The schedule keeps its length in iterations, so the run sees "
        f"{total}/{base} of the recipe's images."
    )
    if enabled:
        return (
            f"{head}: the config's LR {lr_text} is for {base} images "
            f"(auto_scale_lr.base_batch_size), scaled linearly by {total}/{base} "
            f"(auto_scale_lr.enable=True). {schedule} For the recipe's exact batch run "
            f"{base} images per iteration (processes x train_dataloader.batch_size); to keep the "
            f"LR {lr_text} unscaled: --cfg-options auto_scale_lr.enable=False.",
            logging.INFO,
        )
    return (
        f"{head}: NOT scaled, although the config's LR {lr_text} is for {base} images "
        f"(auto_scale_lr.base_batch_size) and this run has {total} (auto_scale_lr.enable="
        f"False). To scale it linearly: --cfg-options auto_scale_lr.enable=True; or run {base} "
        "images per iteration (processes x train_dataloader.batch_size).",
        logging.WARNING,
    )


@HOOKS.register_module()
class DisAlignBatchSizeHook(Hook):
    """Logs, when training starts, the total batch (images per process x processes), the
    learning rate the run really starts from and how to change them (``batch_size_message``).

    The stage-2 configs give the paper's LR for the paper's total batch (ADE20K: 32 images,
    8 GPUs x 4; classification: 256) and enable mmengine's ``auto_scale_lr`` (the runner scales
    the optimizer's LR by total / ``base_batch_size`` before the parameter schedulers are
    built, ``Runner.scale_lr``), so a run on fewer processes gets the linearly scaled LR; this
    line says so, or warns when the LR is left unscaled for another batch. Runs in
    ``before_train``: after the scaling and after ``--resume`` loaded the optimizer.
    """

    priority = "VERY_LOW"

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        per_process = getattr(loader, "batch_size", None)
        if per_process is None:  # a batch sampler without batch_size: nothing to report
            return
        message, level = batch_size_message(
            int(per_process),
            int(runner.world_size),
            _config_lr(runner.cfg),
            _initial_lrs(runner.optim_wrapper),
            runner.cfg.get("auto_scale_lr"),
            by_epoch=isinstance(runner.train_loop, EpochBasedTrainLoop),
        )
        print_log(message, logger="current", level=level)

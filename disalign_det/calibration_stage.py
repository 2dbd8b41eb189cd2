"""The calibration stage (stage 2): loading a stage-1 checkpoint and freezing all but the
calibration.

detectron2's checkpointer skips a parameter whose shape differs from the model's with only a
warning; for the box classifier that would silently replace the user's trained classifier by a
random one, so ``DisAlignCheckpointer`` makes it an error. Calibration parameters missing from
a stage-1 checkpoint are expected: they keep their identity initialisation (alpha = beta = 0).
"""

from __future__ import annotations

import logging
from typing import List

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from torch import nn

from disalign_core import freeze_all_but_calibration

__all__ = ["DisAlignCheckpointer", "check_box_predictor_shapes", "freeze_for_calibration"]

logger = logging.getLogger(__name__)

# Parameters of a box predictor whose shape depends on the number of classes.
_CLASS_DEPENDENT = ("cls_score.weight", "cls_score.bias", "bbox_pred.weight", "bbox_pred.bias")


def check_box_predictor_shapes(
    model: nn.Module, state_dict: dict, source: str = "checkpoint"
) -> None:
    """Raise if ``state_dict`` holds a box classifier/regressor of another shape than ``model``'s.

    Args:
        model (nn.Module): the model to load into (not DDP-wrapped).
        state_dict (dict): name -> tensor or ndarray, possibly with a "module." prefix.
        source (str): name of the checkpoint, for the message.

    Raises:
        ValueError: naming the parameter and both shapes.
    """
    own = model.state_dict()
    for name, module in model.named_modules():
        if not isinstance(module, FastRCNNOutputLayers):
            continue
        for suffix in _CLASS_DEPENDENT:
            key = f"{name}.{suffix}"
            theirs = state_dict.get(key, state_dict.get("module." + key))
            if key not in own or theirs is None:
                continue
            if tuple(theirs.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"{source} does not fit the model: {key} has shape {tuple(theirs.shape)} "
                    f"in the checkpoint but {tuple(own[key].shape)} in the model "
                    f"({module.num_classes} foreground classes, MODEL.ROI_HEADS.NUM_CLASSES). "
                    "Use the stage-1 checkpoint of a model with the same classes."
                )


class DisAlignCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that refuses a box predictor of the wrong class count and logs
    (instead of warning about) calibration parameters that start at the identity."""

    def _load_model(self, checkpoint):
        check_box_predictor_shapes(self.model, checkpoint["model"], "the checkpoint")
        has_predictor = any("box_predictor." in k for k in checkpoint["model"])
        incompatible = super()._load_model(checkpoint)
        # A detector checkpoint (one with a box predictor; an ImageNet backbone has none) whose
        # predictor parameters differ in name, e.g. a linear classifier loaded into a cosine
        # model, would leave part of the classifier untrained: an error, not a warning.
        mismatched = [
            k
            for k in incompatible.missing_keys + incompatible.unexpected_keys
            if "box_predictor." in k and ".calibration." not in f".{k}"
        ]
        if has_predictor and mismatched:
            raise ValueError(
                f"the checkpoint's box predictor does not fit the model: {', '.join(mismatched)} "
                "missing or unexpected. Is MODEL.DISALIGN.CLASSIFIER (linear/cosine) the one of "
                "the stage-1 model?"
            )
        fresh = [k for k in incompatible.missing_keys if ".calibration." in f".{k}"]
        if fresh:
            for k in fresh:
                incompatible.missing_keys.remove(k)
            logger.info(
                f"DisAlign calibration parameters not in the checkpoint start at the identity "
                f"(alpha = beta = 0): {', '.join(fresh)}"
            )
        return incompatible


def freeze_for_calibration(model: nn.Module) -> List[str]:
    """Freeze everything but the DisAlign calibration(s) of ``model`` (BatchNorm statistics
    included: frozen subtrees stay in eval mode after ``model.train()``).

    Returns:
        list[str]: the names of the parameters left trainable.
    """
    trainable = freeze_all_but_calibration(model)
    logger.info(f"DisAlign calibration stage: training only {trainable}")
    return trainable

"""The calibration stage (stage 2): loading a stage-1 checkpoint and freezing all but the
calibration.

detectron2's checkpointer skips a parameter whose shape differs from the model's with only a
warning; for the box classifier that would silently replace the user's trained classifier by a
random one, so ``DisAlignCheckpointer`` makes it an error. Calibration parameters missing from
a stage-1 checkpoint are expected: they keep their identity initialisation (alpha = beta = 0).
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import List

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from torch import nn

from disalign_core import freeze_all_but_calibration

from .modeling.rpn import DisAlignRPN

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
    """DetectionCheckpointer that refuses a box predictor of the wrong class count, logs
    (instead of warning about) calibration parameters that start at the identity, and turns
    an unreadable checkpoint file into an error that names the file and where it came from."""

    # Which config entry named the file being loaded (None: a direct ``load``); set by
    # resume_or_load, for the messages.
    _source_key = None

    def resume_or_load(self, path: str, *, resume: bool = True):
        self._source_key = (
            "last_checkpoint" if resume and self.has_checkpoint() else "MODEL.WEIGHTS"
        )
        if self._source_key == "last_checkpoint":
            named = self.get_checkpoint_file()
            if not os.path.isfile(named):  # e.g. last_checkpoint itself cut off while written
                self._source_key = None
                tag = os.path.join(self.save_dir, "last_checkpoint")
                raise ValueError(
                    f"{tag!r} (OUTPUT_DIR/last_checkpoint, --resume) names "
                    f"{os.path.basename(named)!r}, which is not a file in OUTPUT_DIR. Write the "
                    "name of a complete model_*.pth of OUTPUT_DIR into it, or start again "
                    "without --resume."
                )
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._source_key = None

    def _load_file(self, filename: str):
        try:
            return super()._load_file(filename)
        except (EOFError, KeyError, pickle.UnpicklingError, RuntimeError) as e:
            # torch's own messages say "Ran out of input", name zip internals, or advise
            # weights_only=False, which would run whatever code an untrusted file carries.
            first_line = (str(e).strip().splitlines() or [""])[0]
            if self._source_key == "MODEL.WEIGHTS":
                source = "MODEL.WEIGHTS"
                fix = (
                    "Set MODEL.WEIGHTS to a complete checkpoint (for the calibration stage, the "
                    "stage-1 model_final.pth); copy or train it again if this one is damaged."
                )
            elif self._source_key == "last_checkpoint":
                source = f"named by last_checkpoint in OUTPUT_DIR {self.save_dir!r}, --resume"
                fix = (
                    "It was probably cut off while being written. Delete it and write the name "
                    "of an earlier complete model_*.pth of OUTPUT_DIR into OUTPUT_DIR/"
                    "last_checkpoint, or start again without --resume."
                )
            else:
                source, fix = "checkpoint", "Load a complete checkpoint."
            raise ValueError(
                f"cannot read {filename!r} ({source}): the file is empty, truncated or not a "
                f"checkpoint ({type(e).__name__}: {first_line}). {fix} Do not load it with "
                "torch.load(weights_only=False): that runs any code the file contains."
            ) from None

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
    """Freeze everything but the DisAlign calibration(s) of ``model``.

    Frozen parts get no gradient, and their BatchNorm/InstanceNorm/dropout layers stay in eval
    mode after ``model.train()`` (running statistics fixed). The frozen modules themselves
    follow ``model.train()``: a frozen ``DisAlignRPN`` proposes with the training-time counts
    while the detector trains (as the authors' stage 2), without labelling anchors or computing
    losses; the ROI heads skip the frozen mask/keypoint heads' losses.

    Returns:
        list[str]: the names of the parameters left trainable.
    """
    trainable = freeze_all_but_calibration(model, lock="norm")
    logger.info(f"DisAlign calibration stage: training only {trainable}")
    rpn = getattr(model, "proposal_generator", None)
    if isinstance(rpn, RPN) and not isinstance(rpn, DisAlignRPN):
        logger.warning(
            f"MODEL.PROPOSAL_GENERATOR.NAME is {type(rpn).__name__}: the frozen RPN still "
            "labels anchors and computes its losses in every iteration, for nothing (they "
            "train no parameter). Use 'DisAlignRPN' (the Base-DisAlign configs do) to skip them."
        )
    return trainable

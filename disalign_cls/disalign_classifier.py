"""The calibration stage's classifier: MMPretrain's ImageClassifier with everything but
DisAlign frozen.

Freezing when the model is built (before DDP wraps it) and the stage-1 weights from
``model.stage1_checkpoint`` (so that MMPretrain's plain ``--resume`` works) come from
``disalign_mmengine.CalibrationStageMixin``, shared with MMSegmentation's segmentor; its
docstring says why each happens where it does.

What "frozen" means here (core ``freeze_all_but_calibration``): no gradient for any parameter
but alpha, beta and the confidence of the ``DisAlignClsHead``, and every frozen part
(backbone, neck, the classifier itself, their BatchNorms and dropouts) stays in eval mode when
mmengine's loop calls ``model.train()``. ``tools/test.py`` does not call ``init_weights``:
testing needs only the checkpoint it is given.
"""

from __future__ import annotations

from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS

from disalign_mmengine import CalibrationStageMixin

__all__ = ["DisAlignImageClassifier"]


@MODELS.register_module()
class DisAlignImageClassifier(CalibrationStageMixin, ImageClassifier):
    """ImageClassifier for DisAlign's calibration stage (stage 2).

    Args:
        freeze_for_calibration (bool): freeze all but the DisAlign calibration parameters
            (default True). False builds a plain ImageClassifier (e.g. to train a calibrated
            head jointly).
        stage1_checkpoint (str, optional): the stage-1 checkpoint, a path or URL, loaded by
            ``init_weights`` (``disalign_mmengine.load_stage1_checkpoint``): the calibration,
            absent from it, keeps its identity start; any other key missing or unexpected, or
            a tensor of another shape, is an error naming the checkpoint and the keys. Config
            key ``model.stage1_checkpoint``; on the command line
            ``--cfg-options model.stage1_checkpoint=PATH``.
        *args, **kwargs: ImageClassifier's arguments; ``head`` must be a ``DisAlignClsHead``
            when freezing, else a ValueError says so.
    """

    calibrated_head_key = "model.head"

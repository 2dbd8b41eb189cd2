"""The calibration stage's segmentor: mmseg's EncoderDecoder with everything but DisAlign frozen.

Freezing when the model is built (before DDP wraps it) and the stage-1 weights from
``model.stage1_checkpoint`` (so that mmseg's plain ``--resume`` works) come from
``disalign_mmengine.CalibrationStageMixin``, shared with MMPretrain's classifier; its docstring
says why each happens where it does.

What "frozen" means here (core ``freeze_all_but_calibration``): no gradient for any parameter
but those of each ``DisAlignHead``'s calibration (alpha, beta, the confidence), and the frozen
parts (backbone, decode convs, auxiliary head, their BatchNorms and dropouts) stay in eval mode
when mmengine's loop calls ``model.train()``. ``tools/test.py`` does not call ``init_weights``:
testing needs only the checkpoint it is given.
"""

from __future__ import annotations

from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from disalign_mmengine import CalibrationStageMixin

__all__ = ["DisAlignEncoderDecoder"]


@MODELS.register_module()
class DisAlignEncoderDecoder(CalibrationStageMixin, EncoderDecoder):
    """EncoderDecoder for DisAlign's calibration stage (stage 2).

    Args:
        freeze_for_calibration (bool): freeze all but the DisAlign calibration parameters
            (default True). False builds a plain EncoderDecoder (e.g. to train a calibrated
            head jointly).
        stage1_checkpoint (str, optional): the stage-1 checkpoint, a path or URL, loaded by
            ``init_weights`` (``disalign_mmengine.load_stage1_checkpoint``): the calibration,
            absent from it, keeps its identity start; any other key missing or unexpected, or
            a tensor of another shape, is an error naming the checkpoint and the keys. Config
            key ``model.stage1_checkpoint``; on the command line
            ``--cfg-options model.stage1_checkpoint=PATH``.
        *args, **kwargs: EncoderDecoder's arguments; ``decode_head`` must be a
            ``DisAlignHead`` when freezing, else a ValueError says so.
    """

    calibrated_head_key = "model.decode_head"

"""The calibration stage's segmentor: mmseg's EncoderDecoder with everything but DisAlign frozen.

Freezing happens in ``__init__``, i.e. when the runner builds the model and before it wraps
it in DistributedDataParallel (``Runner.__init__``: build_model, then wrap_model). DDP then
registers only the calibration parameters, so no frozen parameter is reported unused. A hook
(``before_train``) would come too late for DDP. Order against loading does not matter:
freezing sets ``requires_grad`` and an eval lock, loading copies values.

What "frozen" means here (core ``freeze_all_but_calibration``): no gradient for any parameter
but those of each ``DisAlignHead``'s calibration (alpha, beta, the confidence), and the frozen
parts' BatchNorms and dropouts stay in eval mode when mmengine's loop calls ``model.train()``.
The optimizer still receives all parameters (mmengine's constructor passes them all), but
torch's optimizers skip parameters whose ``.grad`` is None, so neither momentum nor weight
decay moves a frozen one.

Where the stage-1 weights come from: ``stage1_checkpoint``, loaded by ``init_weights``. The
runner calls ``init_weights`` when training starts and before it loads ``load_from`` or resumes
(``Runner.train``: ``_init_model_weights``, then ``load_or_resume``). So ``tools/train.py cfg``
starts stage 2 from stage 1, and ``tools/train.py cfg --resume`` then overwrites everything
with the run's own last checkpoint (model, optimizer, iteration): mmseg's plain ``--resume``
works because ``load_from`` stays unset. (With ``load_from`` set to the stage-1 checkpoint,
``--resume`` would resume from it and fail on the optimizer state.) ``tools/test.py`` does
not call ``init_weights``: testing needs only the checkpoint it is given.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from mmengine.logging import print_log
from mmengine.runner.checkpoint import load_checkpoint
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from disalign_core import freeze_all_but_calibration

__all__ = ["DisAlignEncoderDecoder"]


@MODELS.register_module()
class DisAlignEncoderDecoder(EncoderDecoder):
    """EncoderDecoder for DisAlign's calibration stage (stage 2).

    Args:
        freeze_for_calibration (bool): freeze all but the DisAlign calibration parameters
            (default True). False builds a plain EncoderDecoder (e.g. to train a calibrated
            head jointly).
        stage1_checkpoint (str, optional): the stage-1 checkpoint, loaded by ``init_weights``
            (non-strictly: the calibration, absent from it, keeps its identity start; a
            checkpoint for another class count is an error). Config key
            ``model.stage1_checkpoint``; on the command line
            ``--cfg-options model.stage1_checkpoint=PATH``.
        *args, **kwargs: EncoderDecoder's arguments; ``decode_head`` must be a
            ``DisAlignHead`` when freezing, else a ValueError says so.
    """

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
            self.trainable_parameter_names = freeze_all_but_calibration(self)

    def init_weights(self) -> None:
        """mmengine's initialisation, then the stage-1 weights from ``stage1_checkpoint``."""
        super().init_weights()
        if self.stage1_checkpoint:
            print_log(
                f"DisAlign stage 2: loading the stage-1 checkpoint {self.stage1_checkpoint} "
                "(model.stage1_checkpoint)",
                logger="current",
            )
            # mmengine's loader: 'module.' prefixes stripped, missing/unexpected keys logged,
            # unreadable files explained (checkpoint_compat), class counts checked by
            # DisAlignHead._load_from_state_dict.
            load_checkpoint(
                self, self.stage1_checkpoint, map_location="cpu", strict=False, logger="current"
            )
        elif self.freeze_for_calibration:
            print_log(
                "DisAlign stage 2 without model.stage1_checkpoint: the frozen weights are "
                "random unless load_from or --resume provides them",
                logger="current",
                level=logging.WARNING,
            )

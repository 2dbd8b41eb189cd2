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
"""

from __future__ import annotations

import logging
from typing import List, Optional

from mmengine.logging import print_log
from mmengine.runner.checkpoint import load_checkpoint

from disalign_core import freeze_all_but_calibration

__all__ = ["CalibrationStageMixin"]


class CalibrationStageMixin:
    """Stage-2 behaviour for an mmengine ``BaseModel`` subclass (put it first in the bases).

    Args:
        freeze_for_calibration (bool): freeze all but the DisAlign calibration parameters
            (default True). False builds the plain model (e.g. to train a calibrated head
            jointly).
        stage1_checkpoint (str, optional): the stage-1 checkpoint, loaded by ``init_weights``
            non-strictly (the calibration, absent from it, keeps its identity start; the
            DisAlign heads refuse a checkpoint of another class count). Config key
            ``model.stage1_checkpoint``; on the command line
            ``--cfg-options model.stage1_checkpoint=PATH``.
        *args, **kwargs: the model's own arguments. Without a DisAlign head, freezing is a
            ValueError saying so.
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
            # unreadable files explained (disalign_mmengine.checkpoints), class counts checked
            # by the DisAlign heads' _load_from_state_dict.
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

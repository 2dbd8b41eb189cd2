"""What the OpenMMLab plugins (``disalign_seg`` for MMSegmentation, ``disalign_cls`` for
MMPretrain) share: both run on mmengine. Imports torch, mmengine and ``disalign_core`` only,
never MMSegmentation or MMPretrain, so each plugin works without the other framework.

- ``checkpoints``: mmengine checkpoints under torch >= 2.6 (an allow-list for
  ``weights_only`` loading) and errors that explain unreadable checkpoint files;
- ``calibration_stage``: ``CalibrationStageMixin``, the stage-2 behaviour of a segmentor or
  classifier (freeze all but the calibration when built; load ``stage1_checkpoint`` in
  ``init_weights`` so that the stock ``--resume`` works).
"""

from .calibration_stage import CalibrationStageMixin
from .checkpoints import (
    CheckpointReadError,
    allow_mmengine_checkpoints,
    install_checkpoint_errors,
    load_local_checkpoint,
    mmengine_checkpoint_safe_globals,
)

__all__ = [
    "CalibrationStageMixin",
    "CheckpointReadError",
    "allow_mmengine_checkpoints",
    "install_checkpoint_errors",
    "load_local_checkpoint",
    "mmengine_checkpoint_safe_globals",
]

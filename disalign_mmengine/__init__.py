"""What the OpenMMLab plugins (``disalign_seg`` for MMSegmentation, ``disalign_cls`` for
MMPretrain) share: both run on mmengine. Imports torch, mmengine and ``disalign_core`` only,
never MMSegmentation or MMPretrain, so each plugin works without the other framework.

- ``checkpoints``: mmengine checkpoints under torch >= 2.6 (``allow_mmengine_checkpoints``, an
  allow-list for ``weights_only`` loading: the one process-wide change a plugin import makes), errors that explain unreadable checkpoint files, and downloads
  into torch.hub's cache that are loaded with ``weights_only=True``;
- ``calibrated_head``: ``DisAlign<Head>``, the calibrated subclass of any head (the factory, the
  calibration and post-hoc options built from their configs, the errors every head gives);
- ``calibration_stage``: ``CalibrationStageMixin``, the stage-2 behaviour of a segmentor or
  classifier (freeze all but the calibration when built; load ``stage1_checkpoint`` in
  ``init_weights`` so that the stock ``--resume`` works), and ``load_stage1_checkpoint``, which
  refuses a stage-1 checkpoint of another model (``disalign_core.check_stage1_keys``);
- ``atomic_checkpoints``: ``DisAlignCheckpointHook``, mmengine's CheckpointHook with atomic
  checkpoint and pointer writes, and a ``--resume`` that falls back to the newest complete
  checkpoint;
- ``grw_loss``: ``GRWCrossEntropyLossBase``, the re-weighted cross-entropy and its one reduction
  vocabulary (``reduction``, ``avg_mode``), which each plugin's ``GRWCrossEntropyLoss``
  subclasses with its own frequency reader;
- ``heldout_dataset``: ``DisAlignHeldOutSubset``, one part of a stratified held-out calibration
  split of a training dataset (an mmengine dataset wrapper; the plugins register their
  subclasses);
- ``recipe_guard``: ``DisAlignRecipeGuardHook``, which refuses ``--resume`` with another recipe
  than the checkpoint's and keeps the first start's config.
"""

from .atomic_checkpoints import (
    AtomicLocalBackend,
    DisAlignCheckpointHook,
    resolve_resume_checkpoint,
)
from .calibrated_head import (
    CalibratedHeadFactory,
    CalibratedHeadMixin,
    build_calibration,
    check_state_dict_shapes,
    posthoc_loss_error,
)
from .calibration_stage import CalibrationStageMixin, load_stage1_checkpoint
from .checkpoints import (
    CheckpointReadError,
    allow_mmengine_checkpoints,
    check_checkpoint_file,
    download_checkpoint,
    load_local_checkpoint,
    mmengine_checkpoint_safe_globals,
    torch_hub_cache_file,
)
from .grw_loss import GRWCrossEntropyLossBase
from .heldout_dataset import DisAlignHeldOutSubset
from .recipe_guard import DisAlignRecipeGuardHook, RecipeChangedError, recipe_from_config

__all__ = [
    "CalibratedHeadFactory",
    "CalibratedHeadMixin",
    "build_calibration",
    "check_state_dict_shapes",
    "posthoc_loss_error",
    "AtomicLocalBackend",
    "CalibrationStageMixin",
    "CheckpointReadError",
    "DisAlignCheckpointHook",
    "DisAlignHeldOutSubset",
    "DisAlignRecipeGuardHook",
    "GRWCrossEntropyLossBase",
    "RecipeChangedError",
    "allow_mmengine_checkpoints",
    "check_checkpoint_file",
    "download_checkpoint",
    "load_local_checkpoint",
    "load_stage1_checkpoint",
    "mmengine_checkpoint_safe_globals",
    "recipe_from_config",
    "resolve_resume_checkpoint",
    "torch_hub_cache_file",
]

"""DisAlign for MMPretrain 1.x (image classification).

Load it from a config with
``custom_imports = dict(imports=['disalign_cls'], allow_failed_imports=False)``.
Importing registers, in MMPretrain's registries:
- MODELS: ``DisAlignClsHead`` (calibrates any head that classifies through a linear layer),
  ``CosineClsHead`` (the paper's cosine classifier), ``DisAlignImageClassifier`` (the
  calibration stage's classifier, everything else frozen), ``GRWCrossEntropyLoss``;
- METRICS: ``LongTailAccuracy`` (top-k overall and for many-, medium- and few-shot classes);
- HOOKS: ``DisAlignDataCheckHook`` (labels in [0, K), images exist, sampled headers);
- DATASETS: ``DisAlignHeldOutSubset`` (one part of a held-out calibration split of the training
  set, stratified by class; our extension beyond the paper);
and calls ``disalign_mmengine.allow_mmengine_checkpoints`` (torch's ``weights_only`` allow-list
for mmengine's training state, so that ``--resume`` works under torch >= 2.6): the one change
to the process beyond the registries; nothing of mmengine or the framework is replaced.
"""

from disalign_mmengine import allow_mmengine_checkpoints

# The one process-wide change of this import (disalign_mmengine.allow_mmengine_checkpoints says
# what it allows), made before anything can load a checkpoint: Config.fromfile runs
# custom_imports first.
allow_mmengine_checkpoints()

# Importing the modules registers their components.
from .cosine_head import CosineClsHead, CosineLinear  # noqa: E402
from .data_check_hook import DisAlignDataCheckHook  # noqa: E402
from .disalign_classifier import DisAlignImageClassifier  # noqa: E402
from .disalign_head import DisAlignClsHead, calibrated_head_class  # noqa: E402
from .frequencies import count_dataset_labels, load_class_counts  # noqa: E402
from .grw_loss import GRWCrossEntropyLoss  # noqa: E402
from .heldout_dataset import DisAlignHeldOutSubset  # noqa: E402
from .long_tail_metric import LongTailAccuracy  # noqa: E402

__all__ = [
    "CosineClsHead",
    "CosineLinear",
    "DisAlignClsHead",
    "DisAlignDataCheckHook",
    "DisAlignHeldOutSubset",
    "DisAlignImageClassifier",
    "GRWCrossEntropyLoss",
    "LongTailAccuracy",
    "allow_mmengine_checkpoints",
    "calibrated_head_class",
    "count_dataset_labels",
    "load_class_counts",
]

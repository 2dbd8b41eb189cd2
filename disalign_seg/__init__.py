"""DisAlign for MMSegmentation 1.x.

Load it from a config with
``custom_imports = dict(imports=['disalign_seg'], allow_failed_imports=False)``.
Importing registers, in mmseg's registries:
- MODELS: ``DisAlignHead`` (calibrates any decode head), ``DisAlignEncoderDecoder`` (the
  calibration stage's segmentor, everything else frozen), ``GRWCrossEntropyLoss``;
- METRICS: ``LongTailIoUMetric`` (mIoU/mAcc overall and for head, body and tail classes);
- HOOKS: ``DisAlignDataCheckHook`` (missing data files, frequency class names, before_run);
- DATASETS: ``DisAlignHeldOutSubset`` (one part of a held-out calibration split of the training
  set, stratified by the classes of each label map; our extension beyond the paper);
and calls ``disalign_mmengine.allow_mmengine_checkpoints`` (torch's ``weights_only`` allow-list
for mmengine's training state, so that ``--resume`` works under torch >= 2.6): the one change
to the process beyond the registries; nothing of mmengine or the framework is replaced.

Class pixel counts of a training set: ``count_class_pixels`` (``tools/compute_pixel_frequencies.py``
is its command line); frequency files are read by ``disalign_core.read_class_frequencies``.
The demo's generated data set lives in ``disalign_demo.seg``.
"""

from disalign_mmengine import allow_mmengine_checkpoints

# The one process-wide change of this import (disalign_mmengine.allow_mmengine_checkpoints says
# what it allows), made before anything can load a checkpoint: Config.fromfile runs
# custom_imports first.
allow_mmengine_checkpoints()

# Importing the modules registers their components.
from .data_check_hook import DisAlignDataCheckHook  # noqa: E402
from .disalign_encoder_decoder import DisAlignEncoderDecoder  # noqa: E402
from .disalign_head import DisAlignHead, calibrated_head_class  # noqa: E402
from .frequencies import count_class_pixels, dataset_classes_from_config  # noqa: E402
from .grw_loss import GRWCrossEntropyLoss  # noqa: E402
from .heldout_dataset import DisAlignHeldOutSubset  # noqa: E402
from .long_tail_metric import LongTailIoUMetric  # noqa: E402

__all__ = [
    "DisAlignDataCheckHook",
    "DisAlignEncoderDecoder",
    "DisAlignHead",
    "DisAlignHeldOutSubset",
    "GRWCrossEntropyLoss",
    "LongTailIoUMetric",
    "allow_mmengine_checkpoints",
    "calibrated_head_class",
    "count_class_pixels",
    "dataset_classes_from_config",
]

"""DisAlign (CVPR 2021) for detectron2: box predictor, ROI heads, RPN, config, class
frequencies, the calibration stage's checkpointing/freezing, and dataset registration.

Importing this package registers its components in detectron2's registries. The trainer and
the setup that ``projects/DisAlign/train_net.py`` runs are in ``disalign_det.engine``.
"""

from . import modeling as _  # noqa: F401  registration only
from .calibration_stage import (
    DisAlignCheckpointer,
    check_box_predictor_shapes,
    freeze_for_calibration,
)
from .class_frequencies import (
    class_frequencies_from_config,
    class_weights_from_config,
    count_class_images,
    count_class_instances,
)
from .config import add_disalign_config
from .data import check_dataset_images, register_disalign_instances
from .modeling import (
    DisAlignCascadeROIHeads,
    DisAlignFastRCNNOutputLayers,
    DisAlignRPN,
    DisAlignStandardROIHeads,
)

__all__ = [
    "DisAlignCascadeROIHeads",
    "DisAlignCheckpointer",
    "DisAlignFastRCNNOutputLayers",
    "DisAlignRPN",
    "DisAlignStandardROIHeads",
    "add_disalign_config",
    "check_box_predictor_shapes",
    "check_dataset_images",
    "class_frequencies_from_config",
    "class_weights_from_config",
    "count_class_images",
    "count_class_instances",
    "freeze_for_calibration",
    "register_disalign_instances",
]

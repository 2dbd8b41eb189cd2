"""DisAlign (CVPR 2021) for detectron2: box predictor, ROI heads, config, class frequencies,
the calibration stage's checkpointing/freezing, and dataset registration.

Importing this package registers its components in detectron2's registries.
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
    TinyConvNet,
)

__all__ = [k for k in dir() if not k.startswith("_")]

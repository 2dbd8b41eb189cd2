"""DisAlign modeling components. Importing these modules registers the ROI heads and the tiny
backbones in detectron2's registries."""

from .backbone import TinyConvNet
from .box_predictor import DisAlignFastRCNNOutputLayers
from .cascade_roi_heads import DisAlignCascadeROIHeads
from .roi_heads import DisAlignStandardROIHeads

__all__ = [
    "DisAlignFastRCNNOutputLayers",
    "DisAlignStandardROIHeads",
    "DisAlignCascadeROIHeads",
    "TinyConvNet",
]

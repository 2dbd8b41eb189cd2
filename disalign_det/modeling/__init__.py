"""DisAlign modeling components. Importing these modules registers the ROI heads and the RPN
in detectron2's registries."""

from .box_predictor import DisAlignFastRCNNOutputLayers
from .cascade_roi_heads import DisAlignCascadeROIHeads
from .roi_heads import DisAlignStandardROIHeads
from .rpn import DisAlignRPN

__all__ = [
    "DisAlignFastRCNNOutputLayers",
    "DisAlignStandardROIHeads",
    "DisAlignCascadeROIHeads",
    "DisAlignRPN",
]

"""DisAlign modeling components, registered in detectron2's registries at import time."""

from . import backbone as _  # noqa: F401  registration only
from . import cascade_roi_heads as _  # noqa: F401,F811  registration only
from . import roi_heads as _  # noqa: F401,F811  registration only
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

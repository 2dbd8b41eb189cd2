"""DisAlign ROI heads for Mask R-CNN: StandardROIHeads with a DisAlign box predictor."""

from __future__ import annotations

from typing import Dict, List, Union

from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances
from torch import Tensor

from disalign_core.freezing import is_frozen

from .box_predictor import DisAlignFastRCNNOutputLayers

__all__ = ["DisAlignStandardROIHeads", "SkipFrozenHeadLossesMixin"]


class SkipFrozenHeadLossesMixin:
    """In the calibration stage the mask and keypoint heads are frozen (no trainable
    parameter). Their losses could not train anything, so during training they are skipped:
    no mask targets, no head forward, no loss."""

    def _forward_mask(
        self, features: Dict[str, Tensor], instances: List[Instances]
    ) -> Union[Dict[str, Tensor], List[Instances]]:
        if self.training and self.mask_on and is_frozen(self.mask_head):
            return {}
        return super()._forward_mask(features, instances)

    def _forward_keypoint(
        self, features: Dict[str, Tensor], instances: List[Instances]
    ) -> Union[Dict[str, Tensor], List[Instances]]:
        if self.training and self.keypoint_on and is_frozen(self.keypoint_head):
            return {}
        return super()._forward_keypoint(features, instances)


@ROI_HEADS_REGISTRY.register()
class DisAlignStandardROIHeads(SkipFrozenHeadLossesMixin, StandardROIHeads):
    """StandardROIHeads whose box predictor is ``DisAlignFastRCNNOutputLayers`` (configured by
    ``MODEL.DISALIGN``); everything else is detectron2's."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = DisAlignFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret

"""DisAlign's RPN: detectron2's RPN that, when frozen, proposes as in training without the
training-only work.

In the calibration stage (stage 2) the RPN is frozen, but the detector trains: its ROI heads
should see proposals as many as in training (POST_NMS_TOPK_TRAIN, e.g. 2000 for Cascade R-CNN
instead of the 1000 at test time), as the authors' stage 2 (cvpods,
``PROPOSAL_GENERATOR.FREEZE=True``) does. A frozen RPN therefore stays in training mode
(``disalign_core.freeze_except(..., lock="norm")`` keeps only its norm/dropout layers in eval
mode), and this class skips what training mode would compute for nothing: the anchor labelling
and the RPN losses. Not frozen, it is detectron2's RPN.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances
from torch import Tensor

from disalign_core.freezing import is_frozen

__all__ = ["DisAlignRPN"]


@PROPOSAL_GENERATOR_REGISTRY.register()
class DisAlignRPN(RPN):
    """RPN whose frozen instance (no trainable parameter) labels no anchors and returns no
    losses in training mode; its proposals (training-time counts) are unchanged."""

    def _frozen_in_training(self) -> bool:
        return self.training and is_frozen(self)

    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[Tensor], List[Tensor]]:
        if self._frozen_in_training():
            return [], []
        return super().label_and_sample_anchors(anchors, gt_instances)

    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[Tensor],
        gt_labels: List[Tensor],
        pred_anchor_deltas: List[Tensor],
        gt_boxes: List[Tensor],
    ) -> Dict[str, Tensor]:
        if self._frozen_in_training():
            return {}
        return super().losses(
            anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes
        )

"""DisAlign box predictor: detectron2's FastRCNNOutputLayers with a linear or cosine classifier,
the distribution calibration on the foreground logits and a re-weighted classification loss.

Shape shorthand (as detectron2's fast_rcnn.py):
    R: number of ROIs, combined over all images of the minibatch
    C: channels of the box-head feature x (flattened)
    K: number of foreground classes; K + 1 logits with the background last
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

from disalign_core import CONFIDENCE_MODES, DisAlignCalibration, grw_cross_entropy

from ..class_frequencies import class_weights_from_config

__all__ = ["DisAlignFastRCNNOutputLayers", "CLASSIFIERS"]

CLASSIFIERS = ("linear", "cosine")


def _no_proposals(device: torch.device) -> Instances:
    empty = Instances((0, 0))
    empty.proposal_boxes = Boxes(torch.zeros(0, 4, device=device))
    empty.gt_boxes = Boxes(torch.zeros(0, 4, device=device))
    empty.gt_classes = torch.zeros(0, dtype=torch.long, device=device)
    return empty


class DisAlignFastRCNNOutputLayers(FastRCNNOutputLayers):
    """FastRCNNOutputLayers whose class scores are ``calibration(classifier(x), x)``.

    - ``classifier="cosine"``: every one of the K + 1 logits, background included, is
      ``s * cos(w_j, x)`` with one learnable scale s (as the cosine box heads of FsDet and the
      DisAlign authors' code). The background thus lives on the same scale as the classes.
    - the calibration (paper eq. 6) changes only the K foreground logits; the background logit
      is passed through untouched. It is applied in ``forward``, so ``losses``, ``inference``,
      ``predict_probs`` and every cascade stage see calibrated scores.
    - with ``class_weights``, the softmax cross-entropy weights foreground class j by w_j and
      the background by 1 (GRW, paper eq. 11).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        classifier: str = "linear",
        cosine_scale: float = 20.0,
        calibration: bool = False,
        use_magnitude: bool = True,
        use_margin: bool = True,
        confidence: str = "input",
        class_weights: Optional[Sequence[float]] = None,
        **kwargs,
    ):
        """
        Args:
            input_shape (ShapeSpec): shape of the box-head feature.
            classifier (str): "linear" or "cosine".
            cosine_scale (float): initial value of the cosine classifier's scale s.
            calibration (bool): build the DisAlign calibration of the K foreground logits.
            use_magnitude, use_margin (bool), confidence (str): the calibration's ablation
                switches, see ``disalign_core.DisAlignCalibration``.
            class_weights (sequence of float or None): (K,) GRW weights of the foreground
                classes; None keeps the parent's plain cross-entropy.
            kwargs: the arguments of ``FastRCNNOutputLayers``.
        """
        super().__init__(input_shape, **kwargs)
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(f"confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}")
        if class_weights is not None and self.use_sigmoid_ce:
            raise ValueError(
                "DisAlign re-weighting is a softmax loss: it needs use_sigmoid_ce=False"
            )
        self.classifier = classifier
        in_channels = self.cls_score.in_features
        if classifier == "cosine":
            # No bias: a cosine logit is a pure angle times the scale.
            self.cls_score = nn.Linear(in_channels, self.num_classes + 1, bias=False)
            nn.init.normal_(self.cls_score.weight, std=0.01)
            self.cls_scale = nn.Parameter(torch.tensor(float(cosine_scale)))

        self.calibration = (
            DisAlignCalibration(
                self.num_classes,
                in_channels,
                use_magnitude=use_magnitude,
                use_margin=use_margin,
                confidence=confidence,
            )
            if calibration
            else None
        )
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if weights.numel() != self.num_classes:
                raise ValueError(
                    f"class_weights has {weights.numel()} entries but the box predictor has "
                    f"{self.num_classes} foreground classes (MODEL.ROI_HEADS.NUM_CLASSES)"
                )
            # Not persistent: the weights always come from the data/config of the run, and a
            # stage-1 checkpoint without them loads cleanly.
            self.register_buffer("class_weights", weights, persistent=False)
        else:
            self.class_weights = None

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        d = cfg.MODEL.DISALIGN
        ret.update(
            {
                "classifier": d.CLASSIFIER,
                "cosine_scale": d.COSINE_SCALE,
                "calibration": d.CALIBRATION,
                "use_magnitude": d.MAGNITUDE,
                "use_margin": d.MARGIN,
                "confidence": d.CONFIDENCE,
                "class_weights": class_weights_from_config(cfg) if d.REWEIGHT else None,
            }
        )
        return ret

    def class_logits(self, x: Tensor) -> Tensor:
        """Uncalibrated classifier logits z.

        Args:
            x (Tensor): (R, C) box-head features.

        Returns:
            Tensor: (R, K + 1) logits, background last.
        """
        if self.classifier == "linear":
            return self.cls_score(x)
        x_norm = F.normalize(x, dim=1)
        w_norm = F.normalize(self.cls_score.weight, dim=1)
        return self.cls_scale * F.linear(x_norm, w_norm)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            x (Tensor): (R, C, ...) per-region features.

        Returns:
            (Tensor, Tensor): (R, K + 1) calibrated class scores, background last and
            never calibrated; (R, K * 4) or (R, 4) box deltas, as the parent.
        """
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        scores = self.class_logits(x)
        if self.calibration is not None:
            foreground = self.calibration(scores[:, : self.num_classes], x)
            scores = torch.cat([foreground, scores[:, self.num_classes :]], dim=1)
        return scores, self.bbox_pred(x)

    def losses(
        self, predictions: Tuple[Tensor, Tensor], proposals: List[Instances]
    ) -> Dict[str, Tensor]:
        """The parent's losses, with ``loss_cls`` re-weighted when class weights are set.

        A batch without proposals gives zero losses that are still connected to the
        predictor's parameters.
        """
        scores = predictions[0]
        if len(proposals) == 0:
            # detectron2 makes a float gt_classes for an empty list, which its class-specific
            # box loss cannot index with; one image without proposals means the same.
            proposals = [_no_proposals(scores.device)]
        losses = super().losses(predictions, proposals)
        if self.class_weights is None:
            return losses
        gt_classes = torch.cat([p.gt_classes for p in proposals], dim=0)
        loss_cls = grw_cross_entropy(
            scores, gt_classes, self.class_weights, num_extra_classes=1, reduction="mean"
        )
        losses["loss_cls"] = loss_cls * self.loss_weight.get("loss_cls", 1.0)
        return losses

    def extra_repr(self) -> str:
        return f"classifier={self.classifier!r}, reweight={self.class_weights is not None}"

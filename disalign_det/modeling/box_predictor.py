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

from disalign_core import (
    CONFIDENCE_MODES,
    MARGIN_INITS,
    POSTHOC_TYPES,
    DisAlignCalibration,
    PosthocAdjustment,
    calibrate_foreground,
    grw_cross_entropy,
)

from ..class_frequencies import class_frequencies_from_config, class_weights_from_config

__all__ = ["DisAlignFastRCNNOutputLayers", "CLASSIFIERS"]

CLASSIFIERS = ("linear", "cosine")
# Config keys named in errors.
POSTHOC_TYPE_KEY = "MODEL.DISALIGN.POSTHOC.TYPE"
POSTHOC_TAU_KEY = "MODEL.DISALIGN.POSTHOC.TAU"
MARGIN_INIT_KEY = "MODEL.DISALIGN.MARGIN_INIT"
PRIOR_TAU_KEY = "MODEL.DISALIGN.PRIOR_TAU"


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

    Beyond the paper (off by default):

    - ``margin_init="prior"``: the calibration's margin starts at the logit-adjustment
      solution (core ``DisAlignCalibration``), from ``class_counts``;
    - ``posthoc``: a training-free calibration of the stage-1 classifier instead of DisAlign's
      (core ``PosthocAdjustment``), on the K foreground logits only, the background logit
      untouched: "logit_adjustment" adds ``-tau (log pi_j - mean_k log pi_k)`` (centred: all
      classes keep their average standing against the background; only their ranking among
      each other moves), "tau_norm" gives the logits of the foreground rows
      ``w_j / |w_j|^tau`` (biases kept; linear classifier only). The calibration, if built,
      is then not applied, and ``losses`` refuses to train.
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
        margin_init: str = "zero",
        prior_tau: float = 1.0,
        posthoc: Optional[str] = None,
        posthoc_tau: float = 1.0,
        class_counts: Optional[Sequence[float]] = None,
        class_names: Optional[Sequence[str]] = None,
        zero_count: str = "error",
        counts_key: Optional[str] = None,
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
            margin_init (str): "zero" (the paper), "prior" or "prior_offset"
                (MODEL.DISALIGN.MARGIN_INIT; core ``DisAlignCalibration``).
            prior_tau (float): tau of the "prior" start (MODEL.DISALIGN.PRIOR_TAU).
            posthoc (str or None): None, "logit_adjustment" or "tau_norm"
                (MODEL.DISALIGN.POSTHOC.TYPE).
            posthoc_tau (float): its tau (MODEL.DISALIGN.POSTHOC.TAU).
            class_counts (sequence of float or None): (K,) training frequencies of the
                foreground classes; needed by margin_init="prior" and "logit_adjustment".
            class_names (sequence of str or None): (K,) names, for messages.
            zero_count (str): a class of count 0 for the prior: "error" or "warn"
                (MODEL.DISALIGN.ZERO_COUNT).
            counts_key (str or None): where the counts came from, named in errors.
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

        if margin_init not in MARGIN_INITS:
            raise ValueError(
                f"{MARGIN_INIT_KEY} must be one of {MARGIN_INITS} ('zero': the paper's identity "
                f"start, 'prior': the logit-adjustment start in the margin, 'prior_offset': as a fixed "
                f"offset), got {margin_init!r}"
            )
        if margin_init in ("prior", "prior_offset") and not calibration:
            raise ValueError(
                f"{MARGIN_INIT_KEY} {margin_init!r} starts the calibration at the class prior, "
                "but there is none: it needs MODEL.DISALIGN.CALIBRATION True; set "
                f"{MARGIN_INIT_KEY} 'zero' otherwise"
            )
        if margin_init == "prior" and not use_margin:
            raise ValueError(
                f"{MARGIN_INIT_KEY} 'prior' starts the calibration's margin, but there is none: "
                "it needs MODEL.DISALIGN.CALIBRATION True and MODEL.DISALIGN.MARGIN True "
                f"(got {calibration} and {use_margin}); set {MARGIN_INIT_KEY} 'zero' otherwise"
            )
        self.calibration = (
            DisAlignCalibration(
                self.num_classes,
                in_channels,
                use_magnitude=use_magnitude,
                use_margin=use_margin,
                confidence=confidence,
                margin_init=margin_init,
                class_counts=class_counts if margin_init != "zero" else None,
                prior_tau=prior_tau,
                class_names=class_names,
                zero_count=zero_count,
                counts_key=counts_key,
                tau_key=PRIOR_TAU_KEY,
            )
            if calibration
            else None
        )
        self.posthoc: Optional[PosthocAdjustment] = None
        if posthoc:
            if posthoc not in POSTHOC_TYPES:
                raise ValueError(
                    f"{POSTHOC_TYPE_KEY} must be '' (off) or one of {POSTHOC_TYPES}, "
                    f"got {posthoc!r}"
                )
            if posthoc == "tau_norm" and classifier == "cosine":
                raise ValueError(
                    f"{POSTHOC_TYPE_KEY} 'tau_norm' rescales the classifier's weight rows, but "
                    "MODEL.DISALIGN.CLASSIFIER 'cosine' normalises its rows before use: "
                    "tau-normalisation would change nothing. Use 'logit_adjustment' with the "
                    "cosine classifier, or tau_norm with a linear one"
                )
            self.posthoc = PosthocAdjustment(
                posthoc,
                self.num_classes,
                tau=posthoc_tau,
                class_counts=class_counts if posthoc == "logit_adjustment" else None,
                class_names=class_names,
                zero_count=zero_count,
                tau_key=POSTHOC_TAU_KEY,
                counts_key=counts_key,
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
                "margin_init": d.MARGIN_INIT,
                "prior_tau": d.PRIOR_TAU,
                "posthoc": d.POSTHOC.TYPE or None,
                "posthoc_tau": d.POSTHOC.TAU,
                "zero_count": d.ZERO_COUNT,
            }
        )
        if d.MARGIN_INIT in ("prior", "prior_offset") or d.POSTHOC.TYPE == "logit_adjustment":
            # The class prior pi from the frequencies the re-weighting uses (FREQUENCY_TYPE /
            # FREQUENCY_FILE / DATASETS.TRAIN). With DATASETS.HELDOUT they are still those of
            # the whole training set (class_frequencies.py does not see the split): both parts
            # keep its class profile, and stage 1 and 2 share one prior.
            counts, names = class_frequencies_from_config(cfg)
            ret.update(
                class_counts=counts,
                class_names=names,
                counts_key=(
                    f"MODEL.DISALIGN.FREQUENCY_FILE={d.FREQUENCY_FILE!r}"
                    if d.FREQUENCY_FILE
                    else f"the {d.FREQUENCY_TYPE} per class of DATASETS.TRAIN "
                    f"{list(cfg.DATASETS.TRAIN)} (MODEL.DISALIGN.FREQUENCY_TYPE)"
                ),
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
        k = self.num_classes
        if self.posthoc is not None:
            # Instead of the calibration (which a stage-2 config builds but which a stage-1
            # checkpoint does not set): the stage-1 foreground logits adjusted.
            if self.posthoc.type == "tau_norm":
                # Linear classifier (the cosine one is refused): rows 0..K-1 of cls_score.
                w, b = self.cls_score.weight[:k], self.cls_score.bias[:k]
                scores = calibrate_foreground(scores, k, lambda z: self.posthoc(z, w, b))
            else:
                scores = calibrate_foreground(scores, k, self.posthoc)
        elif self.calibration is not None:
            scores = calibrate_foreground(scores, k, lambda z: self.calibration(z, x))
        return scores, self.bbox_pred(x)

    def losses(
        self, predictions: Tuple[Tensor, Tensor], proposals: List[Instances]
    ) -> Dict[str, Tensor]:
        """The parent's losses, with ``loss_cls`` re-weighted when class weights are set.

        A batch without proposals gives zero losses that are still connected to the
        predictor's parameters.
        """
        if self.posthoc is not None:
            raise ValueError(
                f"{POSTHOC_TYPE_KEY}={self.posthoc.type!r} is a training-free calibration for "
                "evaluating a stage-1 model (train_net.py --eval-only MODEL.WEIGHTS <stage-1 "
                f"model>): there is nothing to train. Set {POSTHOC_TYPE_KEY} '' to train (stage "
                "2: DisAlign, whose margin can start at the class prior with "
                f"{MARGIN_INIT_KEY} 'prior')"
            )
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
        return f"classifier={self.classifier!r}, reweight={self.class_weights is not None}" + (
            f", posthoc={self.posthoc.type!r}" if self.posthoc is not None else ""
        )

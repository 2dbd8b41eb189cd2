"""DisAlign ROI heads for Cascade R-CNN: every stage's box predictor is DisAlign's."""

from __future__ import annotations

from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, CascadeROIHeads

from .box_predictor import DisAlignFastRCNNOutputLayers
from .roi_heads import SkipFrozenHeadLossesMixin

__all__ = ["DisAlignCascadeROIHeads"]


@ROI_HEADS_REGISTRY.register()
class DisAlignCascadeROIHeads(SkipFrozenHeadLossesMixin, CascadeROIHeads):
    """CascadeROIHeads with a ``DisAlignFastRCNNOutputLayers`` in every stage, each with its own
    calibration (at test time detectron2 averages the stages' calibrated probabilities)."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        # The parent built stock predictors; only their per-stage box2box_transform is kept.
        heads, stock = ret["box_heads"], ret["box_predictors"]
        # from_config once: it may read the class frequencies of the training data.
        args = DisAlignFastRCNNOutputLayers.from_config(cfg, heads[0].output_shape)
        ret["box_predictors"] = [
            DisAlignFastRCNNOutputLayers(
                **{
                    **args,
                    "input_shape": head.output_shape,
                    # each stage keeps its own regression weights (ROI_BOX_CASCADE_HEAD)
                    "box2box_transform": predictor.box2box_transform,
                }
            )
            for head, predictor in zip(heads, stock)
        ]
        return ret

"""The calibration stage's segmentor: mmseg's EncoderDecoder with everything but DisAlign frozen.

Freezing happens in ``__init__``, i.e. when the runner builds the model and before it wraps
it in DistributedDataParallel (``Runner.__init__``: build_model, then wrap_model). DDP then
registers only the calibration parameters, so no frozen parameter is reported unused. A hook
(``before_train``) would come too late for DDP. Order against ``load_from`` does not matter:
freezing sets ``requires_grad`` and an eval lock, loading copies values.

What "frozen" means here (core ``freeze_all_but_calibration``): no gradient for any parameter
but alpha, beta and the confidence conv of each ``DisAlignHead``, and every module without
trainable parameters (backbone, decode convs, auxiliary head, their BatchNorms and dropouts)
stays in eval mode when mmengine's loop calls ``model.train()``. The optimizer still receives
all parameters (mmengine's constructor passes them all), but torch's optimizers skip
parameters whose ``.grad`` is None, so neither momentum nor weight decay moves a frozen one.
"""

from __future__ import annotations

from typing import List

from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from disalign_core import freeze_all_but_calibration

__all__ = ["DisAlignEncoderDecoder"]


@MODELS.register_module()
class DisAlignEncoderDecoder(EncoderDecoder):
    """EncoderDecoder for DisAlign's calibration stage (stage 2).

    Args:
        freeze_for_calibration (bool): freeze all but the DisAlign calibration parameters
            (default True). False builds a plain EncoderDecoder (e.g. to train a calibrated
            head jointly).
        *args, **kwargs: EncoderDecoder's arguments; ``decode_head`` must be a
            ``DisAlignHead`` when freezing, else a ValueError says so.
    """

    def __init__(self, *args, freeze_for_calibration: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.freeze_for_calibration = freeze_for_calibration
        self.trainable_parameter_names: List[str] = []
        if freeze_for_calibration:
            self.trainable_parameter_names = freeze_all_but_calibration(self)

"""DisAlign decode head: any MMSegmentation decode head with calibrated per-pixel logits.

Shapes: N images, K classes (the head's ``out_channels``), C channels of the feature that
enters the head's classifier ``conv_seg`` (the head's ``channels``), H, W the decode map size.

``MODELS.build(dict(type='DisAlignHead', head='FCNHead', calibration=dict(...), **fcn_args))``
returns an instance of ``DisAlignFCNHead``, a class made once per head class with the bases
``(DisAlignHead, FCNHead)`` and ``inner_head = FCNHead``. It is the inner head itself, not a
wrapper around it:
- nothing of the inner head is copied or re-implemented: its ``forward``, ``loss_by_feat``,
  ``predict_by_feat`` and the attributes the segmentor reads run unchanged;
- ``cls_seg`` (dropout then ``conv_seg``, the one step every such head shares) is extended:
  the logits it returns are calibrated with the confidence computed from the feature that
  ``cls_seg`` receives. An override rather than a forward hook on ``conv_seg``: a hook would
  see the feature after dropout and would change the head from outside its class; the
  override is plain Python that shows in the class and its MRO;
- the parameter names are the plain head's (``decode_head.conv_seg.weight``), plus
  ``decode_head.calibration.{alpha,beta,confidence_weight,confidence_bias}``. A stage-1
  checkpoint of the plain model therefore loads (``model.stage1_checkpoint``, ``load_from``)
  and every weight lands;
  the calibration, absent from it, keeps its identity start.

Two options beyond the paper (its recipe is the default), both reading the training class
frequencies from ``class_frequencies`` (a frequency file or list, as ``GRWCrossEntropyLoss``
reads them) or, when that is not given, from the head's ``GRWCrossEntropyLoss`` config:

- ``posthoc=dict(type='logit_adjustment' | 'tau_norm', tau=1.0)`` (or just the type name):
  the training-free calibration of the stage-1 classifier (core ``PosthocAdjustment``), for
  ``tools/test.py <config> <stage-1 checkpoint>``. The head's logits are then the stage-1
  ``conv_seg`` logits, logit-adjusted (``z - tau log pi``, centred) or tau-normalised
  (``conv_seg`` rows ``w_j / |w_j|^tau``, bias kept); the DisAlign calibration is not applied
  (it is still built, so a stage-2 config and its checkpoints load unchanged: a stage-2
  checkpoint gives the same result as its stage-1 checkpoint). Nothing is trained: ``loss``
  is an error naming the key;
- ``calibration=dict(margin_init='prior', prior_tau=1.0)``: stage 2 starts its margin at the
  logit-adjustment solution (core ``DisAlignCalibration``), set when the head is built.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor, nn

from disalign_core import read_class_frequencies
from disalign_mmengine import CalibratedHeadFactory, CalibratedHeadMixin, build_calibration

__all__ = ["DisAlignHead", "calibrated_head_class"]

HeadSpec = Union[str, type, dict]

CALIBRATION_KEY = "model.decode_head.calibration"
POSTHOC_KEY = "model.decode_head.posthoc"
LOSS_KEY = "model.decode_head.loss_decode"


def calibrated_head_class(head: HeadSpec) -> type:
    """``DisAlign<Head>``: the subclass of ``(DisAlignHead, <Head>)`` for a decode head."""
    return DisAlignHead.head_factory(head)


@MODELS.register_module()
class DisAlignHead(CalibratedHeadMixin, BaseDecodeHead):
    """A decode head whose per-pixel logits are calibrated by DisAlign (paper eq. 6).

    Args:
        head (str | dict | type): the decode head to calibrate: its registered name
            (``'FCNHead'``), its full config dict (``dict(type='FCNHead', ...)``) or its class.
            Any head that classifies through ``cls_seg``/``conv_seg`` works (FCNHead,
            DepthwiseSeparableASPPHead, PSPHead, ASPPHead, ...).
        calibration (dict, optional): keyword arguments of ``DisAlignCalibration``:
            ``use_magnitude``, ``use_margin``, ``confidence`` ("input": the paper's, default;
            "input_bn_relu": the authors' code, 1x1 conv + norm + ReLU before the sigmoid, its
            norm synchronised across GPUs when the head's ``norm_cfg`` is SyncBN, as theirs;
            "constant"; "none"); ``margin_init`` ("zero", the paper, default; "prior": start
            the margin at ``-prior_tau log pi``, see the module docstring), ``prior_tau``
            (default 1.0) and ``class_frequencies`` (the training frequencies for "prior";
            default: the ``GRWCrossEntropyLoss``'s).
        posthoc (str | dict, optional): a training-free calibration instead of DisAlign's:
            ``dict(type='logit_adjustment' | 'tau_norm', tau=1.0, class_frequencies=None,
            zero_count='error')`` or the type name alone. For testing a stage-1 checkpoint;
            the head then refuses to compute a loss.
        **head_kwargs: the inner head's own arguments (``in_channels``, ``channels``,
            ``num_classes``, ``loss_decode``, ...); they update ``head`` when it is a dict.
            Passing them flat lets a stage-2 config inherit them from the stage-1 config.
    """

    calibration_key = CALIBRATION_KEY
    posthoc_key = POSTHOC_KEY

    def init_calibration(
        self, calibration: Optional[dict], posthoc: Union[None, str, dict], head_kwargs: dict
    ) -> None:
        conv_seg = getattr(self, "conv_seg", None)
        if not isinstance(conv_seg, nn.Conv2d):
            raise TypeError(
                f"DisAlignHead: {self.inner_head.__name__} has no conv_seg classifier "
                "(nn.Conv2d) to calibrate"
            )
        self._check_loss_class_counts()
        num_logits = conv_seg.out_channels
        loss_cfg = head_kwargs.get("loss_decode")
        # K logits of conv_seg, confidence from its C input channels.
        self.calibration, self.posthoc = build_calibration(
            num_logits,
            conv_seg.in_channels,
            calibration,
            posthoc,
            read_frequencies=lambda source, key: _class_frequencies(
                source, loss_cfg, num_logits, key
            ),
            calibration_key=CALIBRATION_KEY,
            posthoc_key=POSTHOC_KEY,
        )
        if self.calibration.confidence_norm is not None and "Sync" in str(
            (self.norm_cfg or {}).get("type", "")
        ):
            # The authors' ConvModule uses the head's norm (SyncBN on ADE20K). Without a
            # process group mmengine's runner reverts it to plain BN, like the head's own.
            self.calibration = nn.SyncBatchNorm.convert_sync_batchnorm(self.calibration)

    def _check_loss_class_counts(self) -> None:
        """A re-weighted loss for another class count is an error now, not at the first step."""
        losses = (
            self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]
        )
        for i, loss in enumerate(losses):
            weights = getattr(loss, "class_weight", None)
            source = getattr(loss, "frequency_source", None)
            if source is None or not isinstance(weights, Tensor):
                continue  # not a GRWCrossEntropyLoss
            if weights.numel() != self.num_classes:
                key = "model.decode_head.loss_decode" + (
                    f"[{i}]" if isinstance(self.loss_decode, nn.ModuleList) else ""
                )
                raise ValueError(
                    f"{key}.class_frequencies ({source}) has {weights.numel()} classes but "
                    f"model.decode_head.num_classes is {self.num_classes}: give the frequency "
                    f"file of the training data's {self.num_classes} classes "
                    "(tools/compute_pixel_frequencies.py writes one), or fix num_classes"
                )

    def cls_seg(self, feat: Tensor) -> Tensor:
        """Classify and calibrate each pixel.

        Args:
            feat (Tensor): (N, C, H, W) feature entering the classifier.

        Returns:
            Tensor: (N, K, H, W) calibrated logits ``(1 + sigma(feat) alpha) z + sigma(feat) beta``
            with ``z`` the inner head's logits. The confidence sees ``feat`` before dropout.
            With ``posthoc``: ``z`` logit-adjusted or tau-normalised instead.
        """
        logits = super().cls_seg(feat)
        if self.posthoc is not None:
            return self.posthoc(logits, self.conv_seg.weight, self.conv_seg.bias)
        return self.calibration(logits, feat)

    def expected_state_shapes(self) -> Tuple[Dict[str, Tuple[Optional[int], ...]], str]:
        # mmengine loads non-strictly and only warns about shape mismatches, which would leave
        # a randomly initialised classifier in place: another class count is an error.
        k, c = self.conv_seg.out_channels, self.conv_seg.in_channels
        shapes = {
            # the class count only: another width is the stage-1 key check's to report
            "conv_seg.weight": (k, None, None, None),
            "conv_seg.bias": (k,),
            "calibration.alpha": (k,),
            "calibration.beta": (k,),
        }
        return shapes, f"num_classes={self.num_classes}, channels={c}"


def _loss_frequency_source(loss_cfg: Any) -> Tuple[Any, Optional[str]]:
    """The ``class_frequencies`` of the first loss config that has them (GRWCrossEntropyLoss),
    and its config key; (None, None) when none has."""
    cfgs: List[Any] = list(loss_cfg) if isinstance(loss_cfg, (list, tuple)) else [loss_cfg]
    for i, cfg in enumerate(cfgs):
        if isinstance(cfg, dict) and cfg.get("class_frequencies") is not None:
            index = f"[{i}]" if isinstance(loss_cfg, (list, tuple)) else ""
            return cfg["class_frequencies"], f"{LOSS_KEY}{index}.class_frequencies"
    return None, None


def _class_frequencies(
    source: Any, loss_cfg: Any, num_classes: int, key: str
) -> Tuple[List[float], Optional[List[str]], str]:
    """Training class frequencies for the class prior: ``source`` (``<key>.class_frequencies``),
    else the GRW loss's. Returns (counts, names, the config key they came from)."""
    source_key = f"{key}.class_frequencies"
    if source is None:
        source, source_key = _loss_frequency_source(loss_cfg)
        if source is None:
            raise ValueError(
                f"{key} needs the training class pixel frequencies for the class prior: set "
                f"{key}.class_frequencies to a frequency file or list (as GRWCrossEntropyLoss "
                "reads; tools/compute_pixel_frequencies.py writes one), or use a "
                f"GRWCrossEntropyLoss in {LOSS_KEY}, whose frequencies are then used"
            )
    counts, names = read_class_frequencies(source, key=source_key, num_classes=num_classes)
    return counts, names, source_key


DisAlignHead.head_factory = CalibratedHeadFactory(DisAlignHead, BaseDecodeHead, MODELS, "mmseg")

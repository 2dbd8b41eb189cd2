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
"""

from __future__ import annotations

from typing import Dict, Optional, Union

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor, nn

from disalign_core import DisAlignCalibration

__all__ = ["DisAlignHead", "calibrated_head_class"]

HeadSpec = Union[str, type, dict]

# inner head class -> its calibrated subclass, made once so that isinstance and pickling work.
_CALIBRATED: Dict[type, type] = {}


def _head_class(head: HeadSpec) -> type:
    """The decode head class named by a registry name, a config dict or the class itself."""
    name = head.get("type") if isinstance(head, dict) else head
    cls = MODELS.get(name) if isinstance(name, str) else name
    if cls is None:
        raise KeyError(f"DisAlignHead: decode head {name!r} is not registered in mmseg's MODELS")
    if not (isinstance(cls, type) and issubclass(cls, BaseDecodeHead)):
        raise TypeError(f"DisAlignHead: head must be a BaseDecodeHead subclass, got {cls!r}")
    if issubclass(cls, DisAlignHead):
        raise TypeError(f"DisAlignHead: {cls.__name__} is already calibrated; do not nest them")
    return cls


def calibrated_head_class(head: HeadSpec) -> type:
    """``DisAlign<Head>``: the subclass of ``(DisAlignHead, <Head>)`` for a decode head."""
    cls = _head_class(head)
    if cls not in _CALIBRATED:
        name = f"DisAlign{cls.__name__}"
        namespace = {"__module__": __name__, "__qualname__": name, "inner_head": cls}
        sub = type(cls)(name, (DisAlignHead, cls), namespace)
        # Module-level name so that pickle (spawned workers, deepcopy fallbacks) finds the class.
        globals()[name] = sub
        _CALIBRATED[cls] = sub
    return _CALIBRATED[cls]


@MODELS.register_module()
class DisAlignHead(BaseDecodeHead):
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
            "constant"; "none").
        **head_kwargs: the inner head's own arguments (``in_channels``, ``channels``,
            ``num_classes``, ``loss_decode``, ...); they update ``head`` when it is a dict.
            Passing them flat lets a stage-2 config inherit them from the stage-1 config.
    """

    # The calibrated decode head class (FCNHead, ...); set on each DisAlign<Head> subclass.
    inner_head: Optional[type] = None

    def __new__(cls, head: HeadSpec = None, *args, **kwargs):
        if cls is DisAlignHead:
            if head is None:
                raise TypeError("DisAlignHead needs head=<decode head name, config or class>")
            cls = calibrated_head_class(head)
        return super().__new__(cls)

    def __init__(self, head: HeadSpec, *, calibration: Optional[dict] = None, **head_kwargs):
        if isinstance(head, dict):
            head_kwargs = {**{k: v for k, v in head.items() if k != "type"}, **head_kwargs}
        super().__init__(**head_kwargs)
        conv_seg = getattr(self, "conv_seg", None)
        if not isinstance(conv_seg, nn.Conv2d):
            raise TypeError(
                f"DisAlignHead: {self.inner_head.__name__} has no conv_seg classifier "
                "(nn.Conv2d) to calibrate"
            )
        self._check_loss_class_counts()
        # K logits of conv_seg, confidence from its C input channels.
        self.calibration = DisAlignCalibration(
            conv_seg.out_channels, conv_seg.in_channels, **(calibration or {})
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
        """
        return self.calibration(super().cls_seg(feat), feat)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # mmengine loads non-strictly and only warns about shape mismatches, which would leave
        # a randomly initialised classifier in place: a checkpoint for another class count is
        # an error here.
        expected = self.conv_seg.out_channels
        for key in ("conv_seg.weight", "conv_seg.bias", "calibration.alpha", "calibration.beta"):
            value = state_dict.get(prefix + key)
            if value is not None and value.shape[0] != expected:
                raise ValueError(
                    f"checkpoint does not fit the model: {prefix + key} has {value.shape[0]} "
                    f"classes (shape {tuple(value.shape)}) but the model's decode head has "
                    f"num_classes={self.num_classes} ({expected} outputs)"
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

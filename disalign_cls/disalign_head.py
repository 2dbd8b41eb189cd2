"""DisAlign classification head: any MMPretrain head that classifies through a linear layer,
with calibrated logits (paper eq. 6).

Shapes: N images, C channels of the classifier's input feature (the head's ``pre_logits``),
K classes.

``MODELS.build(dict(type='DisAlignClsHead', head='LinearClsHead', calibration=dict(...),
**linear_head_args))`` returns an instance of ``DisAlignLinearClsHead``, a class made once per
head class with the bases ``(DisAlignClsHead, LinearClsHead)``. It is the inner head itself,
not a wrapper:

- nothing of the inner head is copied: its ``__init__``, ``pre_logits``, ``loss``,
  ``predict`` and loss module run unchanged;
- ``forward`` is MMPretrain's own contract for these heads, ``classifier(pre_logits(feats))``,
  with the logits calibrated by a confidence computed from ``pre_logits``, the feature the
  classifier sees. ``loss`` and ``predict`` call ``forward``, so training and inference both
  see the calibrated logits;
- parameter names are the plain head's (``head.fc.weight``) plus
  ``head.calibration.{alpha,beta,confidence_weight,confidence_bias}``: a plain stage-1
  checkpoint loads with ``load_from`` and every weight lands; the calibration, absent from it,
  keeps its identity start.

Heads whose ``forward`` is ``classifier(pre_logits(feats))``: ``LinearClsHead``,
``CosineClsHead`` (this package), ``StackedLinearClsHead`` and ``VisionTransformerClsHead``
(their classifiers are found by name, ``CLASSIFIER_NAMES``); any other such head works with
``classifier='<attribute path>'``.

Two options beyond the paper (its recipe is the default), both reading the training images per
class from ``class_frequencies`` (a dataset config whose annotation list is counted, a
frequency file or a list: ``frequencies.load_class_counts``, as ``GRWCrossEntropyLoss``) or,
when that is not given, from the head's ``GRWCrossEntropyLoss`` config:

- ``posthoc=dict(type='logit_adjustment' | 'tau_norm', tau=1.0)`` (or just the type name):
  the training-free calibration of the stage-1 classifier (core ``PosthocAdjustment``), for
  ``tools/test.py <config> <stage-1 checkpoint>``. The logits are then the stage-1
  classifier's, logit-adjusted (``z - tau log pi``, centred) or tau-normalised (rows
  ``w_j / |w_j|^tau``, bias kept; refused for ``CosineClsHead``, whose rows are normalised
  anyway); the DisAlign calibration is not applied (it is still built, so a stage-2 config and
  its checkpoints load unchanged). Nothing is trained: ``loss`` is an error naming the key;
- ``calibration=dict(margin_init='prior', prior_tau=1.0)``: stage 2 starts its margin at the
  logit-adjustment solution (core ``DisAlignCalibration``), set when the head is built.

The authors' released classification layer (cvpods ``DisAlignLinear``), for comparison with
their numbers: ``calibration=dict(form='authors_cls')`` (on the command line
``--cfg-options model.head.calibration.form=authors_cls``). Stage 2 then starts at
``(1 + sigma(x)) z`` with the confidence weight at the constant 0.1, not at the stage-1 model
(core ``DisAlignCalibration``'s docstring: on a ReLU network's pooled feature the confidence
saturates at exactly 1 and learns nothing). On ``CosineClsHead`` it reads the L2-normalised
feature, as their ``DisAlignNormalizedLinear``; ``calibration.confidence_input='l2_normalized'``
gives the paper's form that input too.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from disalign_core import posthoc_config
from disalign_mmengine import CalibratedHeadFactory, CalibratedHeadMixin, build_calibration

from .cosine_head import CosineLinear
from .frequencies import load_class_counts

__all__ = ["CLASSIFIER_NAMES", "DisAlignClsHead", "calibrated_head_class"]

HeadSpec = Union[str, type, dict]

CALIBRATION_KEY = "model.head.calibration"
POSTHOC_KEY = "model.head.posthoc"
LOSS_KEY = "model.head.loss"

# Attribute path of the final linear classifier of heads that do not call it ``fc``.
CLASSIFIER_NAMES: Dict[str, str] = {"VisionTransformerClsHead": "layers.head"}


def _refuse_classifier_less_head(cls: type) -> None:
    if cls is ClsHead:
        raise TypeError(
            "DisAlignClsHead: ClsHead has no classifier (it passes its input through); give a "
            "head with a linear classifier, e.g. 'LinearClsHead' or 'CosineClsHead'"
        )


def calibrated_head_class(head: HeadSpec) -> type:
    """``DisAlign<Head>``: the subclass of ``(DisAlignClsHead, <Head>)`` for a head class."""
    return DisAlignClsHead.head_factory(head)


def _linear_shape(module: nn.Module) -> Optional[Tuple[int, int, str]]:
    """(K, C, parameter prefix) of a linear-like classifier: an ``nn.Linear``, a
    ``CosineLinear``, or a block holding one as ``fc`` (StackedLinearClsHead's LinearBlock)."""
    if isinstance(getattr(module, "in_features", None), int):
        return module.out_features, module.in_features, ""
    inner = getattr(module, "fc", None)
    if inner is not None and isinstance(getattr(inner, "in_features", None), int):
        return inner.out_features, inner.in_features, "fc."
    return None


@MODELS.register_module()
class DisAlignClsHead(CalibratedHeadMixin, ClsHead):
    """A classification head whose logits are calibrated by DisAlign.

    Args:
        head (str | dict | type): the head to calibrate: its registered name
            (``'LinearClsHead'``), its full config dict or its class.
        calibration (dict, optional): keyword arguments of ``DisAlignCalibration``:
            ``use_magnitude``, ``use_margin``, ``confidence`` ("input" | "constant" | "none");
            ``margin_init`` ("zero", the paper, default; "prior": start the margin at
            ``-prior_tau log pi``, see the module docstring), ``prior_tau`` (default 1.0) and
            ``class_frequencies`` (the training images per class for "prior"; default: the
            ``GRWCrossEntropyLoss``'s); ``form`` ("paper", default; "authors_cls": the
            authors' released cvpods classification layer, see the module docstring) and
            ``confidence_input`` ("raw", default; "l2_normalized": the confidence reads
            ``x / |x|``; default "l2_normalized" for ``form='authors_cls'`` on a cosine
            classifier, as the authors' ``DisAlignNormalizedLinear``).
        posthoc (str | dict, optional): a training-free calibration instead of DisAlign's:
            ``dict(type='logit_adjustment' | 'tau_norm', tau=1.0, class_frequencies=None,
            zero_count='error')`` or the type name alone. For testing a stage-1 checkpoint;
            the head then refuses to compute a loss.
        classifier (str, optional): attribute path of the head's final linear classifier;
            default ``CLASSIFIER_NAMES`` for the head, else ``'fc'``.
        **head_kwargs: the inner head's own arguments (``num_classes``, ``in_channels``,
            ``loss``, ``topk``, ...); they update ``head`` when it is a dict. Passing them flat
            lets a stage-2 config inherit them from the stage-1 config.
    """

    calibration_key = CALIBRATION_KEY
    posthoc_key = POSTHOC_KEY
    wrapper_options = ("classifier",)

    def init_calibration(
        self,
        calibration: Optional[dict],
        posthoc: Union[None, str, dict],
        head_kwargs: dict,
        classifier: Optional[str] = None,
    ) -> None:
        inner_name = self.inner_head.__name__
        self.classifier_name = classifier or CLASSIFIER_NAMES.get(inner_name, "fc")
        try:
            module = self.get_submodule(self.classifier_name)
        except AttributeError:
            module = None
        shape = _linear_shape(module) if isinstance(module, nn.Module) else None
        if shape is None:
            raise TypeError(
                f"DisAlignClsHead: {inner_name} has no linear classifier at "
                f"{self.classifier_name!r} (an nn.Linear or CosineLinear); name it with "
                "classifier='<attribute path>'"
            )
        num_classes, in_channels, suffix = shape
        # Parameter names of the classifier, for the class-count check on loading.
        prefix = next(n for n, m in self.named_modules() if m is module)
        self._classifier_weight_key = f"{prefix}.{suffix}weight"
        self._linear_name = f"{prefix}.{suffix}".rstrip(".")
        loss_cfg = head_kwargs.get("loss")
        cosine = isinstance(self.get_submodule(self._linear_name), CosineLinear)
        calibration = dict(calibration or {})
        if calibration.get("form") == "authors_cls" and cosine:
            # The authors' cosine layer (DisAlignNormalizedLinear) computes its confidence
            # from the normalised feature, as its logits.
            calibration.setdefault("confidence_input", "l2_normalized")
        post = posthoc_config(posthoc, POSTHOC_KEY)
        if post is not None and post["type"] == "tau_norm" and cosine:
            raise ValueError(
                f"{POSTHOC_KEY}='tau_norm' changes nothing on a cosine classifier "
                f"({inner_name}): its class weights are normalised before use. Use "
                "'logit_adjustment', or tau_norm on a linear classifier"
            )
        self.calibration, self.posthoc = build_calibration(
            num_classes,
            in_channels,
            calibration,
            post,
            read_frequencies=lambda source, key: _class_counts(source, loss_cfg, num_classes, key),
            calibration_key=CALIBRATION_KEY,
            posthoc_key=POSTHOC_KEY,
        )

    @property
    def classifier(self) -> nn.Module:
        """The inner head's final linear classifier."""
        return self.get_submodule(self.classifier_name)

    def forward(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """Classify and calibrate.

        Args:
            feats (tuple[Tensor]): the neck's (or backbone's) outputs; the head's
                ``pre_logits`` turns them into the (N, C) classifier input x.

        Returns:
            Tensor: (N, K) calibrated logits ``(1 + sigma(x) alpha) z + sigma(x) beta`` with
            ``z = classifier(x)`` the inner head's logits; with ``posthoc``, ``z``
            logit-adjusted or tau-normalised instead.
        """
        x = self.pre_logits(feats)
        logits = self.classifier(x)
        if self.posthoc is not None:
            linear = self.get_submodule(self._linear_name)
            return self.posthoc(logits, linear.weight, getattr(linear, "bias", None))
        return self.calibration(logits, x)

    def expected_state_shapes(self) -> Tuple[Dict[str, Tuple[int, ...]], str]:
        # mmengine loads non-strictly and only warns about shape mismatches, which would leave
        # a randomly initialised classifier in place: a checkpoint that does not fit is an error.
        k, c = self.calibration.num_classes, self.calibration.in_channels
        shapes = {
            self._classifier_weight_key: (k, c),
            "calibration.alpha": (k,),
            "calibration.beta": (k,),
            "calibration.confidence_weight": (c,),
        }
        return shapes, f"num_classes={k}, in_channels={c}"


def _class_counts(
    source: Any, loss_cfg: Any, num_classes: int, key: str
) -> Tuple[List[float], Optional[List[str]], str]:
    """Training images per class for the class prior: ``source`` (``<key>.class_frequencies``),
    else the GRW loss config's. Returns (counts, names, the config key they came from)."""
    source_key = f"{key}.class_frequencies"
    if source is None:
        source = loss_cfg.get("class_frequencies") if isinstance(loss_cfg, dict) else None
        source_key = f"{LOSS_KEY}.class_frequencies"
        if source is None:
            raise ValueError(
                f"{key} needs the training images per class for the class prior: set "
                f"{key}.class_frequencies to the training dataset config (its annotation list "
                "is counted), a frequency file or a list, as GRWCrossEntropyLoss reads them, or "
                f"use a GRWCrossEntropyLoss in {LOSS_KEY}, whose frequencies are then used"
            )
    counts, names = load_class_counts(source, num_classes, key=source_key)
    return counts, names, source_key


DisAlignClsHead.head_factory = CalibratedHeadFactory(
    DisAlignClsHead, ClsHead, MODELS, "MMPretrain", check=_refuse_classifier_less_head
)

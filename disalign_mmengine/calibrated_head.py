"""``DisAlign<Head>``: what every OpenMMLab plugin's calibrated head is made of.

A plugin registers one wrapper name (``DisAlignHead`` in MMSegmentation, ``DisAlignClsHead`` in
MMPretrain). Building it with ``head='<Head>'`` returns an instance of ``DisAlign<Head>``, a
class made once per head class with the bases ``(wrapper, <Head>)``: the inner head itself, not
a module around it, so its forward, losses, predictions and parameter names run unchanged and a
plain stage-1 checkpoint loads into it. The wrapper adds only the calibration (core
``DisAlignCalibration``) or a training-free ``posthoc`` adjustment where the head makes its
logits.

This module holds the parts that do not depend on the framework:

- ``CalibratedHeadMixin`` (first base of the wrapper): ``__new__`` picks ``DisAlign<Head>``;
- ``CalibratedHeadFactory``: resolves ``head`` (registry name, config dict or class), checks it
  and makes the subclass once (named in the wrapper's module, so pickling works);
- ``build_calibration``: the calibration and the post-hoc adjustment from their config dicts,
  with the class frequencies for the prior read by the plugin's reader;
- ``posthoc_loss_error`` and ``check_state_dict_shapes``: the errors every head gives for
  training a post-hoc head and for a checkpoint of another class count.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from disalign_core import DisAlignCalibration, PosthocAdjustment, posthoc_config

__all__ = [
    "CalibratedHeadFactory",
    "CalibratedHeadMixin",
    "FrequencyReader",
    "build_calibration",
    "check_state_dict_shapes",
    "posthoc_loss_error",
]

HeadSpec = Union[str, type, dict]
# (source or None, config key) -> (counts, names, the config key they came from)
FrequencyReader = Callable[[Any, str], Tuple[List[float], Optional[List[str]], str]]


class CalibratedHeadMixin:
    """First base of a plugin's wrapper head. Building the wrapper with ``head=<Head>`` gives an
    instance of ``DisAlign<Head>`` (``head_factory``); ``inner_head`` is ``<Head>`` on those
    subclasses and None on the wrapper."""

    head_factory: "CalibratedHeadFactory"
    inner_head: Optional[type] = None
    # The wrapper's config keys of its two options, named in errors.
    calibration_key: str = "calibration"
    posthoc_key: str = "posthoc"
    # Further wrapper arguments (not the inner head's), passed to ``init_calibration``.
    wrapper_options: Tuple[str, ...] = ()

    def __new__(cls, head: HeadSpec = None, *args, **kwargs):
        if cls.inner_head is None:
            if head is None:
                raise TypeError(f"{cls.__name__} needs head=<head name, config or class>")
            cls = cls.head_factory(head)
        return super().__new__(cls)

    def __init__(
        self,
        head: HeadSpec,
        *,
        calibration: Optional[dict] = None,
        posthoc: Union[None, str, dict] = None,
        **head_kwargs,
    ):
        # A config dict for ``head`` gives the inner head's arguments; flat ones override them
        # (so a stage-2 config can inherit them from the stage-1 config).
        if isinstance(head, dict):
            head_kwargs = {**{k: v for k, v in head.items() if k != "type"}, **head_kwargs}
        options = {k: head_kwargs.pop(k) for k in self.wrapper_options if k in head_kwargs}
        super().__init__(**head_kwargs)
        self.init_calibration(calibration, posthoc, head_kwargs, **options)

    def init_calibration(
        self, calibration: Optional[dict], posthoc: Union[None, str, dict], head_kwargs: dict
    ) -> None:
        """Build ``self.calibration`` and ``self.posthoc`` (``build_calibration``) once the inner
        head is built; ``head_kwargs`` are its arguments (the loss config, ...)."""
        raise NotImplementedError

    def expected_state_shapes(self) -> Tuple[Dict[str, Tuple[int, ...]], str]:
        """(parameter name -> the model's shape, for the classifier and the calibration; the
        model's setting for the message), checked by ``_load_from_state_dict``."""
        raise NotImplementedError

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        shapes, model = self.expected_state_shapes()
        check_state_dict_shapes(state_dict, prefix, shapes, model)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def loss(self, *args, **kwargs) -> dict:
        """The inner head's loss; an error with ``posthoc``, which has nothing to train."""
        posthoc = getattr(self, "posthoc", None)
        if posthoc is not None:
            raise posthoc_loss_error(posthoc.type, self.posthoc_key, self.calibration_key)
        return super().loss(*args, **kwargs)


class CalibratedHeadFactory:
    """Makes ``DisAlign<Head>`` for a wrapper class (a ``CalibratedHeadMixin`` subclass).

    Args:
        wrapper (type): the registered wrapper, e.g. ``DisAlignHead``.
        base (type): the framework's head base class every ``<Head>`` must subclass.
        registry: the framework's ``MODELS`` registry, where head names are looked up.
        framework (str): the framework's name, for error messages.
        check (callable, optional): ``check(head_class)`` raises for heads the wrapper cannot
            calibrate although they subclass ``base`` (e.g. MMPretrain's classifier-less
            ``ClsHead``).
    """

    def __init__(
        self,
        wrapper: type,
        base: type,
        registry: Any,
        framework: str,
        check: Optional[Callable[[type], None]] = None,
    ):
        self.wrapper, self.base, self.registry = wrapper, base, registry
        self.framework, self.check = framework, check
        # inner head class -> its calibrated subclass, made once so isinstance and pickling work
        self._made: Dict[type, type] = {}

    def inner_class(self, head: HeadSpec) -> type:
        """The head class named by a registry name, a config dict or the class itself."""
        name = head.get("type") if isinstance(head, dict) else head
        cls = self.registry.get(name) if isinstance(name, str) else name
        wrapper = self.wrapper.__name__
        if cls is None:
            raise KeyError(
                f"{wrapper}: head {name!r} is not registered in {self.framework}'s MODELS"
            )
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{wrapper}: head must be a {self.base.__name__} subclass, got {cls!r}")
        if issubclass(cls, self.wrapper):
            raise TypeError(f"{wrapper}: {cls.__name__} is already calibrated; do not nest them")
        if self.check is not None:
            self.check(cls)
        return cls

    def __call__(self, head: HeadSpec) -> type:
        """``DisAlign<Head>``, the subclass of ``(wrapper, <Head>)``."""
        cls = self.inner_class(head)
        if cls not in self._made:
            name = f"DisAlign{cls.__name__}"
            module = self.wrapper.__module__
            namespace = {"__module__": module, "__qualname__": name, "inner_head": cls}
            sub = type(cls)(name, (self.wrapper, cls), namespace)
            # A module-level name, so that pickle (spawned workers, deepcopy) finds the class.
            setattr(sys.modules[module], name, sub)
            self._made[cls] = sub
        return self._made[cls]


def build_calibration(
    num_classes: int,
    in_channels: int,
    calibration: Optional[dict],
    posthoc: Union[None, str, dict],
    *,
    read_frequencies: FrequencyReader,
    calibration_key: str,
    posthoc_key: str,
) -> Tuple[DisAlignCalibration, Optional[PosthocAdjustment]]:
    """The head's calibration (K logits, confidence from C channels) and post-hoc adjustment.

    Args:
        num_classes (int): K.
        in_channels (int): C, the channels of the feature the classifier reads.
        calibration (dict, optional): ``DisAlignCalibration`` keyword arguments, plus
            ``class_frequencies`` (read with ``margin_init='prior'`` only).
        posthoc (str | dict, optional): the ``posthoc`` option (core ``posthoc_config``).
        read_frequencies: the plugin's reader of training class frequencies; called with the
            given source (or None: then it falls back to the loss's) and the config key.
        calibration_key, posthoc_key (str): config keys of the two options, for errors.

    Returns:
        (DisAlignCalibration, PosthocAdjustment or None).
    """
    calibration = dict(calibration or {})
    if calibration.get("margin_init", "zero") in ("prior", "prior_offset"):
        counts, names, key = read_frequencies(
            calibration.pop("class_frequencies", None), calibration_key
        )
        calibration.update(class_counts=counts, class_names=names, counts_key=key)
        calibration.setdefault("tau_key", f"{calibration_key}.prior_tau")
    elif "class_frequencies" in calibration:
        raise ValueError(
            f"{calibration_key}.class_frequencies is only read with margin_init='prior' or "
            "'prior_offset'"
        )
    module = DisAlignCalibration(num_classes, in_channels, **calibration)
    post = posthoc_config(posthoc, posthoc_key)
    if post is None:
        return module, None
    counts = names = key = None
    if post["type"] == "logit_adjustment":
        counts, names, key = read_frequencies(post["class_frequencies"], posthoc_key)
    adjustment = PosthocAdjustment(
        post["type"],
        num_classes,
        tau=post["tau"],
        class_counts=counts,
        class_names=names,
        zero_count=post["zero_count"],
        tau_key=f"{posthoc_key}.tau",
        counts_key=key,
    )
    return module, adjustment


def posthoc_loss_error(posthoc_type: str, posthoc_key: str, calibration_key: str) -> ValueError:
    """The error of ``loss`` on a head with a training-free ``posthoc`` adjustment."""
    return ValueError(
        f"{posthoc_key}={posthoc_type!r} is a training-free calibration for testing a stage-1 "
        "checkpoint (tools/test.py <config> <checkpoint>): there is nothing to train. Remove "
        f"{posthoc_key} to train (stage 1: the plain head; stage 2: DisAlign, whose margin can "
        f"start at the class prior with {calibration_key}.margin_init='prior')"
    )


def check_state_dict_shapes(
    state_dict: Dict[str, Any],
    prefix: str,
    expected: Dict[str, Tuple[Optional[int], ...]],
    model: str,
) -> None:
    """Refuse a checkpoint whose classifier or calibration has another shape.

    mmengine loads non-strictly and only warns about shape mismatches, which would leave a
    randomly initialised classifier in place; a head calls this from ``_load_from_state_dict``.

    Args:
        state_dict (dict): the state dict being loaded.
        prefix (str): the head's prefix in it.
        expected (dict): parameter name (without prefix) -> the model's shape; None in a
            dimension that another check owns (e.g. a classifier's input channels, which the
            stage-1 key check reports with the rest of the model).
        model (str): the model's setting, e.g. ``"num_classes=150, in_channels=512"``.
    """
    for key, shape in expected.items():
        value = state_dict.get(prefix + key)
        if value is None:
            continue
        got = tuple(value.shape)
        if len(got) != len(shape) or any(e is not None and g != e for g, e in zip(got, shape)):
            wanted = tuple("*" if e is None else e for e in shape)
            raise ValueError(
                f"checkpoint does not fit the model: {prefix + key} has {got[0] if got else '?'} "
                f"classes or channels (shape {got}) but the model's head expects shape "
                f"{wanted} ({model})".replace("'*'", "*")
            )

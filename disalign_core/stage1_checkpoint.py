"""Loading a stage-1 checkpoint into a stage-2 model, framework-free: one rule for every plugin.

Stage 2 trains only the calibration (alpha, beta, the confidence) on top of frozen layers, so
every frozen parameter must come from the stage-1 checkpoint. A checkpoint of another model
(another architecture, decode head or framework) loaded non-strictly leaves the layers it has
no weights for at their random initialisation, and stage 2 would calibrate on top of them
without a sign beyond the framework's generic "keys do not match" warning, which every correct
stage-2 load prints too (the calibration is always new). ``check_stage1_keys`` turns the
missing and unexpected keys of a non-strict load into that rule:

- keys of the calibration (a ``calibration`` module anywhere in the name) missing from the
  checkpoint are expected: they keep their identity start, and are returned to be logged;
- anything else missing or unexpected is a ``Stage1CheckpointMismatch`` naming the checkpoint,
  the config key that named it, a few keys per top-level module, and the likely cause.

``describe_local_file`` says which local file a URL resolved to: the download caches of
iopath (detectron2) and torch.hub (mmengine) key a file by the last part of the URL's path,
not its host, so two servers' ``model_final.pkl`` share one cache entry.
"""

from __future__ import annotations

import datetime
import os
from collections import OrderedDict
from typing import Iterable, List, Sequence

__all__ = [
    "Stage1CheckpointMismatch",
    "check_stage1_keys",
    "describe_local_file",
    "is_calibration_key",
    "is_url",
]

# How many keys an error lists per top-level module.
_SHOWN = 3


class Stage1CheckpointMismatch(ValueError):
    """A stage-1 checkpoint whose weights do not cover the stage-2 model's frozen layers."""


def is_calibration_key(key: str) -> bool:
    """Whether a state-dict key belongs to a DisAlign calibration (``...calibration.alpha``)."""
    return ".calibration." in f".{key}"


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL (scheme ``http(s)://``, ``detectron2://``, ``s3://``, ...)."""
    return "://" in str(path)


def _by_module(keys: Sequence[str]) -> "OrderedDict[str, List[str]]":
    grouped: "OrderedDict[str, List[str]]" = OrderedDict()
    for k in keys:
        grouped.setdefault(k.split(".", 1)[0], []).append(k)
    return grouped


def _summary(keys: Sequence[str]) -> str:
    parts = []
    for module, names in _by_module(keys).items():
        shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
        parts.append(f"{module}: {len(names)} ({shown})")
    return "; ".join(parts)


def _likely_cause(missing: Sequence[str], unexpected: Sequence[str], frozen_keys: int) -> str:
    # 0.8, not 1: torch never reports a BatchNorm's num_batches_tracked as missing, so even a
    # checkpoint with nothing of the model's falls short of all of the model's keys.
    if frozen_keys > 0 and len(missing) >= 0.8 * frozen_keys:
        return (
            "almost none of the model's weights are in it: it is the checkpoint of another "
            "model or framework (e.g. a segmentation checkpoint for a classifier), or its keys "
            "carry a prefix the model does not have"
        )
    lacking, extra = list(_by_module(missing)), list(_by_module(unexpected))
    if lacking and extra and set(lacking).isdisjoint(extra):
        # Whole top-level modules of the checkpoint are not the model's, and the reverse (a
        # segmentor's decode_head where a classifier has its head): some shared backbone
        # layers may have loaded, but the model is another one.
        return (
            f"its {', '.join(extra)} and the model's {', '.join(lacking)} have no counterpart "
            "in the other: it is the checkpoint of another model or framework (e.g. a "
            "segmentation checkpoint for a classifier)"
        )
    if not extra:
        return (
            f"it has no weights for {', '.join(lacking)}: it is a partial checkpoint (e.g. a "
            "backbone only) or the checkpoint of another architecture or head"
        )
    modules = sorted(set(lacking) | set(extra))
    return (
        f"the weights of {', '.join(modules)} differ: it is probably the checkpoint of another "
        "architecture or head (another decode or box head, backbone depth or classifier type "
        "than the config's)"
    )


def check_stage1_keys(
    missing_keys: Iterable[str],
    unexpected_keys: Iterable[str],
    *,
    checkpoint: str,
    config_key: str,
    model_keys: int = 0,
) -> List[str]:
    """Apply the stage-1 loading rule to the outcome of a non-strict load.

    Args:
        missing_keys: the model's state-dict keys the checkpoint did not provide.
        unexpected_keys: the checkpoint's keys the model does not have.
        checkpoint (str): the checkpoint as the user named it (path or URL), for the message.
        config_key (str): the config key or option that named it (``MODEL.WEIGHTS``,
            ``model.stage1_checkpoint``), for the message.
        model_keys (int): the number of keys in the model's state dict (0: unknown), to tell
            "another model altogether" from "another head".

    Returns:
        list[str]: the calibration keys that were missing (they start at the identity).

    Raises:
        Stage1CheckpointMismatch: if any other key is missing or unexpected.
    """
    missing = list(missing_keys)
    unexpected = list(unexpected_keys)
    new = [k for k in missing if is_calibration_key(k)]
    missing = [k for k in missing if not is_calibration_key(k)]
    if not missing and not unexpected:
        return new
    lines = [
        f"the stage-1 checkpoint {checkpoint} ({config_key}) does not fit the stage-2 model, "
        "so stage 2 would calibrate on top of frozen layers that kept their random "
        "initialisation."
    ]
    if missing:
        lines.append(f"Not in the checkpoint ({len(missing)} keys): {_summary(missing)}.")
    if unexpected:
        lines.append(
            f"In the checkpoint but not in the model ({len(unexpected)} keys): "
            f"{_summary(unexpected)}."
        )
    frozen_keys = model_keys - len(new)  # the keys the checkpoint should have provided
    lines.append(f"Likely cause: {_likely_cause(missing, unexpected, frozen_keys)}.")
    lines.append(
        f"Fix: set {config_key} to the stage-1 checkpoint of this config's model (same "
        "architecture, head and classes)."
    )
    raise Stage1CheckpointMismatch(" ".join(lines))


def describe_local_file(path: str) -> str:
    """``'<path> (<bytes> bytes, modified <UTC time>)'``: what a URL resolved to, so that a
    stale download cache shows in the log."""
    st = os.stat(path)
    modified = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
    return f"{path} ({st.st_size} bytes, modified {modified:%Y-%m-%d %H:%M:%S} UTC)"

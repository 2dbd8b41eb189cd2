"""``--resume`` only continues the recipe the checkpoint was trained with, and the run's first
config stays on disk.

mmengine's ``--resume`` loads the last checkpoint and trains on with whatever the config says
now: a changed ``rho`` (``--cfg-options model.decode_head.loss_decode.rho=0.5``) silently
applies from then on, and ``Runner.dump_config`` overwrites ``<work_dir>/<config name>.py`` on
every start, so nothing in the work dir says any more how the first part was trained (the
per-run ``<work_dir>/<timestamp>/`` folders keep their own logs).

``DisAlignRecipeGuardHook`` (``custom_hooks`` of the shipped configs) at ``before_run``, before
the stage-1 checkpoint, the resumed checkpoint or any batch is loaded:

- stores the **recipe** of the run in every checkpoint it saves (``meta['disalign_recipe']``):
  under ``model``, every ``rho``, ``class_frequencies`` (and the sha256 of the file it names),
  ``zero_count``, ``avg_mode``, ``calibration`` (magnitude, margin, confidence), ``posthoc``,
  ``classifier``, ``num_classes`` and ``freeze_for_calibration``, and the ``type`` of every
  loss (``loss``, ``loss_decode``, ``loss_cls``: GRW or not), plus ``extra_keys``;
- with ``--resume``, compares it with the recipe of the checkpoint to resume from (the one
  ``DisAlignCheckpointHook`` picks; for a checkpoint saved without this hook, the recipe is
  read from the config text mmengine stores in ``meta['cfg']``). A difference is a
  ``RecipeChangedError`` naming each key with its old and new value, unless the run says it
  means it: ``--cfg-options disalign_allow_recipe_change=True`` (a top-level config key, as
  mmengine's own ``resume`` and ``load_from``: the stock ``tools/train.py`` has no flag of
  ours) or the hook's ``allow_recipe_change=True``; then the differences are logged and
  training continues with the new recipe. Nothing else is compared, so a plain resume (also
  after kill -9, or with another ``max_iters``) works as before;
- keeps the **first config**: the first run's config text travels in every checkpoint
  (``meta['disalign_first_config']``); on ``--resume`` it is written back to
  ``<work_dir>/<config name>.py`` (which the runner has just overwritten), and this run's config
  goes beside it as ``<config name>.resume-<timestamp>.py`` (only when the two differ; not when
  the resume is refused).
"""

from __future__ import annotations

import logging
import os.path as osp
from typing import Any, Dict, Mapping, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from disalign_core import (
    HASH_SUFFIX,
    NOT_SET,
    atomic_write,
    file_sha256,
    is_complete_checkpoint,
    plain_value,
    recipe_differences,
)

from .atomic_checkpoints import DEFAULT_TEMPLATES, resolve_resume_checkpoint
from .checkpoints import allow_mmengine_checkpoints, load_local_checkpoint

__all__ = [
    "ALLOW_KEY",
    "DisAlignRecipeGuardHook",
    "RecipeChangedError",
    "recipe_from_config",
]

# The top-level config key that allows a resume with another recipe.
ALLOW_KEY = "disalign_allow_recipe_change"
META_RECIPE = "disalign_recipe"
META_FIRST_CONFIG = "disalign_first_config"
# The argument names under ``model`` that define the DisAlign recipe.
RECIPE_NAMES = frozenset(
    {
        "rho",
        "class_frequencies",
        "zero_count",
        "avg_mode",
        "calibration",
        "posthoc",
        "classifier",
        "num_classes",
        "freeze_for_calibration",
    }
)
# Dicts under these keys are losses; their ``type`` is part of the recipe (GRW or not).
LOSS_KEYS = frozenset({"loss", "loss_decode", "loss_cls"})
# How many characters of a value a message shows.
_SHOWN = 120


class RecipeChangedError(ValueError):
    """``--resume`` with a config whose recipe differs from the checkpoint's."""


def _leaves(value: Any, path: str, recipe: Dict[str, Any]) -> None:
    """A dict value (``calibration=dict(...)``) as one entry per leaf, so that a message names
    the argument that changed (``...calibration.use_margin``)."""
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            _leaves(inner, f"{path}.{key}", recipe)
    else:
        recipe[path] = plain_value(value)


def _walk(node: Any, prefix: str, recipe: Dict[str, Any], parent_key: str = "") -> None:
    if isinstance(node, Mapping):
        if parent_key in LOSS_KEYS and "type" in node:
            recipe[f"{prefix}.type"] = plain_value(node["type"])
        for key, value in node.items():
            path = f"{prefix}.{key}"
            if key in RECIPE_NAMES:
                _leaves(value, path, recipe)
            else:
                _walk(value, path, recipe, str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            # a list of losses (loss_decode=[...]) keeps the loss key for its items
            _walk(value, f"{prefix}.{i}", recipe, parent_key)


def _get(cfg: Mapping, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return NOT_SET
    return plain_value(node)


def recipe_from_config(
    cfg: Mapping, extra_keys: Sequence[str] = (), hash_files: bool = True
) -> Dict[str, Any]:
    """The recipe keys of a config (module docstring): {dotted key: plain value}.

    Args:
        cfg: an mmengine ``Config`` (or dict) with a ``model`` entry.
        extra_keys: more dotted keys to include (``train_dataloader.dataset.data_root``).
        hash_files: add the sha256 of each ``class_frequencies`` file that exists.
    """
    recipe: Dict[str, Any] = {}
    _walk(cfg.get("model", {}), "model", recipe)
    for key in extra_keys:
        recipe[key] = _get(cfg, key)
    if hash_files:
        for key, value in list(recipe.items()):
            if key.endswith(".class_frequencies") and isinstance(value, str) and osp.isfile(value):
                recipe[key + HASH_SUFFIX] = file_sha256(value)
    return recipe


def _show(value: Any) -> str:
    text = value if value == NOT_SET else repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _read_meta(path: str) -> Dict[str, Any]:
    """The ``meta`` of a checkpoint, without reading its tensors into memory (mmap)."""
    allow_mmengine_checkpoints()
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True)
    except Exception:  # legacy (non-zip) format, or unreadable: the plain loader says why
        checkpoint = load_local_checkpoint(path, map_location="cpu")
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    return meta if isinstance(meta, dict) else {}


def _config_file_name(runner) -> Optional[str]:
    """The file ``Runner.dump_config`` wrote this run's config to, if it is one it rewrites on
    every start (a named ``.py`` config; without a name it writes ``<timestamp>.py``)."""
    filename = getattr(runner.cfg, "filename", None)
    if filename and str(filename).endswith(".py"):
        return osp.basename(filename)
    return None


@HOOKS.register_module()
class DisAlignRecipeGuardHook(Hook):
    """Refuse ``--resume`` with a recipe other than the checkpoint's; keep the first config
    (module docstring). ``custom_hooks = [dict(type='DisAlignRecipeGuardHook')]``.

    Args:
        allow_recipe_change (bool): resume even when the recipe differs (the differences are
            logged). Same as the top-level config key ``disalign_allow_recipe_change=True``.
        extra_keys (sequence of str): more dotted config keys that belong to the recipe.
    """

    # Before every other hook's before_run: a refused resume runs nothing else.
    priority = "HIGHEST"

    def __init__(self, allow_recipe_change: bool = False, extra_keys: Sequence[str] = ()):
        self.allow_recipe_change = allow_recipe_change
        self.extra_keys = tuple(extra_keys)
        self._recipe: Optional[Dict[str, Any]] = None
        self._first_config: Optional[Dict[str, Any]] = None

    def before_run(self, runner) -> None:
        cfg = runner.cfg
        self._recipe = recipe_from_config(cfg, self.extra_keys)
        name = _config_file_name(runner)
        text = cfg.pretty_text if name else None
        self._first_config = {"file": name, "text": text}
        if not getattr(runner, "_resume", False):
            return
        path = runner._load_from
        if path is None:
            templates = DEFAULT_TEMPLATES
            for hook in runner.hooks:
                if hasattr(hook, "filename_tmpl"):
                    templates = (hook.filename_tmpl,) + DEFAULT_TEMPLATES
            path = resolve_resume_checkpoint(runner.work_dir, templates).path
        if not path or "://" in str(path) or not is_complete_checkpoint(path):
            return  # nothing to resume, or a file whose load will fail and say why
        meta = _read_meta(path)
        first = meta.get(META_FIRST_CONFIG)
        if not isinstance(first, dict) and isinstance(meta.get("cfg"), str):
            first = {"file": name, "text": meta["cfg"]}  # saved without this hook
        if isinstance(first, dict):
            self._first_config = first
        old = meta.get(META_RECIPE)
        if not isinstance(old, dict) and isinstance(meta.get("cfg"), str):
            try:  # a checkpoint saved without this hook: the config text mmengine stored
                old = recipe_from_config(Config.fromstring(meta["cfg"], file_format=".py"))
            except Exception:  # noqa: BLE001  a config text that no longer parses
                old = None
        if not isinstance(old, dict):
            self._keep_first_config(runner, name, text, refused=False)
            print_log(
                f"DisAlign --resume: {path} holds neither a recipe nor a config; the recipe of "
                "this run cannot be compared with the checkpoint's",
                logger="current",
                level=logging.WARNING,
            )
            return
        diffs = recipe_differences(old, self._recipe)
        allowed = self.allow_recipe_change or bool(cfg.get(ALLOW_KEY, False))
        self._keep_first_config(runner, name, text, refused=bool(diffs) and not allowed)
        if not diffs:
            return
        listed = "; ".join(
            f"{k}: {_show(a)} in the checkpoint, {_show(b)} now" for k, a, b in diffs
        )
        done = f"iteration {meta['iter']}" if "iter" in meta else "its last iteration"
        record = (
            f"{osp.join(runner.work_dir, name)} keeps the first config"
            if name
            else "the first config stays in the checkpoints"
        )
        if allowed:
            print_log(
                f"DisAlign --resume from {path}: the recipe changes ({ALLOW_KEY}): {listed}. "
                f"Up to {done} the run was trained with the checkpoint's values, from now on "
                f"with the new ones; {record}",
                logger="current",
                level=logging.WARNING,
            )
            return
        raise RecipeChangedError(
            f"--resume in {runner.work_dir} from {path}: this run's config trains another "
            f"recipe than the one the checkpoint was trained with (up to {done}): {listed}. "
            "Resuming would silently train the rest with the new values, and the run's "
            "checkpoints would no longer say how it was trained. Fix: resume with the "
            "checkpoint's values (drop the changed --cfg-options, or undo the change in the "
            "config file), or train the new recipe as a new run in another --work-dir; to "
            "change the recipe of this run on purpose, add --cfg-options "
            f"{ALLOW_KEY}=True ({record}, this run's is written beside it). Nothing was "
            "trained; the checkpoints, last_checkpoint and the config file are as they were"
        )

    def _keep_first_config(
        self, runner, name: Optional[str], text: Optional[str], refused: bool
    ) -> None:
        """Write the first config back over this run's dump; this run's beside it."""
        first = self._first_config or {}
        if not name or not is_main_process() or first.get("file") != name:
            return
        if not isinstance(first.get("text"), str) or first["text"] == text:
            return
        dump = osp.join(runner.work_dir, name)
        if not refused:
            stem = osp.splitext(name)[0]
            this_run = osp.join(runner.work_dir, f"{stem}.resume-{runner.timestamp}.py")
            atomic_write(this_run, text)
        atomic_write(dump, first["text"])
        if not refused:
            print_log(
                f"DisAlign --resume: {dump} keeps the config of the run's first start; this "
                f"run's config is {this_run}",
                logger="current",
            )

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.setdefault("meta", {})
        if self._recipe is not None:
            meta[META_RECIPE] = self._recipe
        if self._first_config is not None and self._first_config.get("text") is not None:
            meta[META_FIRST_CONFIG] = self._first_config

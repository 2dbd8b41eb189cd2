"""Checkpoints that survive a full disk: atomic writes, and ``--resume`` that falls back to the
newest complete checkpoint.

mmengine 0.10 writes a checkpoint with ``LocalBackend.put`` (``open(path, 'wb')``, then write)
and then ``<work_dir>/last_checkpoint`` in place (``open(path, 'w')``). When the disk fills up
during either write, the run stops with the checkpoint cut off, or with ``last_checkpoint``
empty; ``--resume`` then refuses (an empty path) although the previous checkpoint is intact.

``DisAlignCheckpointHook`` (``default_hooks.checkpoint.type`` in the shipped configs; every
argument of mmengine's ``CheckpointHook`` works as there) changes two things:

- **Atomic writes.** A checkpoint (also a best one) and ``last_checkpoint`` are written to a
  temporary file in the same folder (``.<name>.tmp-<pid>-<random>``), flushed to disk, and
  then renamed onto their name (``os.replace``, atomic on POSIX and Windows): a file of that
  name is always complete, old or new. A failed write removes the temporary file, leaves the
  previous checkpoint and ``last_checkpoint`` as they were and stops the run with an error
  naming both (the file backend ``disalign_atomic_local``, ``AtomicLocalBackend``; used when
  the checkpoints go to a local folder and the config gives no ``backend_args``). With
  ``max_keep_ckpts``, the outdated checkpoint is removed after the new one and
  ``last_checkpoint`` are written, not before as in mmengine (where a full disk would leave
  neither).
- **Resume that finds the newest complete checkpoint.** With ``--resume`` (and no
  ``load_from``), when ``last_checkpoint`` is empty, names a missing file or a truncated one
  (an empty file, a zip archive without its end), or is missing while checkpoints exist, the
  run resumes from the newest complete ``iter_N.pth`` / ``epoch_N.pth`` (the hook's
  ``filename_tmpl``) of that folder instead, and the log says so. Nothing on disk is changed;
  the next checkpoint rewrites ``last_checkpoint``. Without any complete checkpoint the load
  fails as before, naming the file (``disalign_mmengine.checkpoints``).

Nothing of mmengine is patched: the hook is a registered ``CheckpointHook`` subclass and the
backend a registered file backend (by name only; the ``local`` backend is unchanged).
"""

from __future__ import annotations

import logging
import os
import os.path as osp
import re
from typing import Callable, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from disalign_core import ResumeChoice, atomic_write
from disalign_core import resolve_resume_checkpoint as resolve_checkpoint_in

from .checkpoints import check_checkpoint_file

__all__ = [
    "ATOMIC_BACKEND",
    "AtomicLocalBackend",
    "DisAlignCheckpointHook",
    "resolve_resume_checkpoint",
]

# The registered name of AtomicLocalBackend (backend_args=dict(backend=ATOMIC_BACKEND)).
ATOMIC_BACKEND = "disalign_atomic_local"
POINTER = "last_checkpoint"
# mmengine's default checkpoint names (CheckpointHook.filename_tmpl).
DEFAULT_TEMPLATES = ("iter_{}.pth", "epoch_{}.pth")


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put`` / ``put_text`` write atomically
    (``atomic_write``). Registered as ``disalign_atomic_local``."""

    def put(self, obj: bytes, filepath) -> None:
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        atomic_write(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        atomic_write(str(filepath), obj, encoding=encoding)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def _template_order(templates: Sequence[str]) -> Callable[[str], Optional[float]]:
    """A file name's iteration or epoch under one of ``templates`` (``iter_{}.pth``), or None."""
    patterns = [
        re.compile("^" + re.escape(t).replace(re.escape("{}"), r"(\d+)") + "$") for t in templates
    ]

    def order(name: str) -> Optional[float]:
        for pattern in patterns:
            match = pattern.match(name)
            if match:
                return int(match.group(1))
        return None

    return order


def resolve_resume_checkpoint(
    work_dir: str, templates: Sequence[str] = DEFAULT_TEMPLATES
) -> ResumeChoice:
    """The checkpoint ``--resume`` should load from ``work_dir``: the one ``last_checkpoint``
    names when it is complete; otherwise the newest complete checkpoint (named by one of
    ``templates``) of the folder it names (core ``resolve_resume_checkpoint``)."""
    return resolve_checkpoint_in(
        osp.join(work_dir, POINTER), lambda p: p, _template_order(templates)
    )


@HOOKS.register_module()
class DisAlignCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with atomic writes of the checkpoints and of
    ``last_checkpoint``, and a ``--resume`` that falls back to the newest complete checkpoint
    (module docstring). Same arguments as ``CheckpointHook``; ``default_hooks =
    dict(checkpoint=dict(type='DisAlignCheckpointHook', ...))``.
    """

    def before_run(self, runner) -> None:
        super().before_run(runner)
        path = runner._load_from
        if getattr(runner, "_resume", False) and path is None:
            path = self._resume_checkpoint(runner)
        # Runner.load_or_resume runs after before_run: a cut-off file is named here, with the
        # fix, instead of torch's bare zip error (mmengine's loader is left as it is).
        if path and "://" not in str(path):
            check_checkpoint_file(str(path))

    def _resume_checkpoint(self, runner) -> Optional[str]:
        """The file ``--resume`` will load (None: none, training starts anew); points the runner
        at the newest complete checkpoint when ``last_checkpoint`` names a cut-off one."""
        templates = (self.filename_tmpl,) + DEFAULT_TEMPLATES
        choice = resolve_resume_checkpoint(runner.work_dir, templates)
        if choice.fallback:
            print_log(
                f"DisAlign --resume: {choice.fallback}", logger="current", level=logging.WARNING
            )
            # Runner.load_or_resume resumes from load_from when --resume is given with it;
            # nothing is written, the next checkpoint rewrites last_checkpoint.
            runner._load_from = choice.path
        elif choice.pointer == "":
            raise FileNotFoundError(
                f"--resume: {osp.join(runner.work_dir, POINTER)} is empty (cut off while being "
                f"written) and {runner.work_dir} holds no complete checkpoint "
                f"({', '.join(templates)}). Fix: start again without --resume, or give the "
                "checkpoint to resume from with --cfg-options load_from=PATH"
            )
        return choice.path

    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if (
            self.file_client_args is None
            and self.backend_args is None
            and "://" not in str(out_dir)
        ):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine 0.10.7's CheckpointHook._save_checkpoint_with_step, with two changes: the
        # outdated checkpoint (max_keep_ckpts) is removed after the new one and last_checkpoint
        # are written, not before (a full disk would otherwise leave neither), and
        # last_checkpoint is written atomically (mmengine opens it with 'w' in place). A failed
        # write stops the run with an error saying what is still intact.
        outdated = None
        if self.max_keep_ckpts > 0:
            # _save_checkpoint and _save_best_checkpoint may both call this in one epoch.
            if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    outdated = self.keep_ckpt_ids.popleft()
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        save_file = osp.join(runner.work_dir, POINTER)
        previous = None
        if is_main_process() and osp.isfile(save_file):
            with open(save_file, encoding="utf-8", errors="replace") as f:
                previous = f.read().strip()
        try:
            runner.save_checkpoint(
                self.out_dir,
                ckpt_filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args,
            )
            # Model parallel-like training pulls sharded states from all ranks; only the main
            # process writes the pointer and removes files.
            if not is_main_process():
                return
            atomic_write(save_file, self.last_ckpt)
        except OSError as err:
            kept = (
                f"{save_file} still names {previous}, which is intact"
                if previous
                else f"{save_file} is as it was"
            )
            raise OSError(
                err.errno,
                f"could not write the checkpoint {self.last_ckpt} or {save_file} "
                f"({type(err).__name__}: {err}); nothing was half-written: {kept}. Fix: free "
                "disk space (or lower default_hooks.checkpoint.max_keep_ckpts), then run the "
                "same command with --resume",
            ) from err
        if outdated is not None:
            ckpt_path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated)
            )
            if self.file_backend.isfile(ckpt_path):
                self.file_backend.remove(ckpt_path)
            elif self.file_backend.isdir(ckpt_path):  # checkpoints saved by deepspeed
                self.file_backend.rmtree(ckpt_path)

"""The calibration stage under mmengine's ``MMDistributedDataParallel`` in a gloo group of CPU
processes, for the MMSegmentation and MMPretrain tests.

OpenMMLab's ``dist_train.sh`` cannot run on a machine without a GPU (mmengine 0.10's pytorch
launcher calls ``torch.cuda.set_device``), so this builds what it would: the stage-2 model
wrapped in ``MMDistributedDataParallel`` (``find_unused_parameters=False``, the default),
trained with mmengine's ``train_step`` on different data per rank.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
from typing import List

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _function(name: str):
    """``'module:function'`` -> the function."""
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


def _worker(rank, world_size, port, out_dir, scope, build_model, batch, calibration, steps):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        # mmengine and the test's modules are imported only now that the group is up (hence
        # functions by name, not pickled): importing them first hung 4 of 8 runs here.
        from mmengine.model import MMDistributedDataParallel
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import init_default_scope

        build_model, batch, calibration = map(_function, (build_model, batch, calibration))
        init_default_scope(scope)
        torch.manual_seed(0)  # the same initial weights on every rank, as from one checkpoint
        model = build_model()
        ddp = MMDistributedDataParallel(module=model)
        optim = build_optim_wrapper(
            model, dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.5, momentum=0.9))
        )
        ddp.train()
        for step in range(steps):
            ddp.train_step(batch(rank, step), optim)
        state = {k: v.detach().clone() for k, v in calibration(model).state_dict().items()}
        torch.save(state, os.path.join(out_dir, f"rank{rank}.pth"))
    finally:
        dist.destroy_process_group()


def train_calibration_in_gloo_group(
    out_dir: str,
    scope: str,
    build_model: str,
    batch: str,
    calibration: str,
    steps: int = 3,
    world_size: int = 2,
    timeout_s: float = 300.0,
) -> List[dict]:
    """Train ``build_model()`` (a stage-2 model, built in registry scope ``scope``) for
    ``steps`` optimizer steps in ``world_size`` gloo processes, rank ``r``'s step ``s`` on the
    data batch ``batch(r, s)``; returns each rank's ``calibration(model).state_dict()``.

    The three functions are named ``'module:function'`` (modules importable from the test's
    ``sys.path``) and imported by each process. Processes still running after ``timeout_s``
    are killed and raise, so that a hung collective fails the test instead of the suite.
    """
    import torch.multiprocessing as mp

    args = (world_size, _free_port(), out_dir, scope, build_model, batch, calibration, steps)
    context = mp.spawn(_worker, args=args, nprocs=world_size, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1):  # raises if a process failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"{world_size} gloo processes still running after {timeout_s} s")
    return [torch.load(os.path.join(out_dir, f"rank{r}.pth")) for r in range(world_size)]

"""Stage 2 under DistributedDataParallel with a 2-process gloo group on CPU.

mmseg's dist_train.sh cannot run on a machine without a GPU (mmengine 0.10's pytorch launcher
calls torch.cuda.set_device), so this test builds what it would: the stage-2 model wrapped in
mmengine's MMDistributedDataParallel (find_unused_parameters=False, the default), trained for a
few steps with mmengine's train_step on different data per rank.
"""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

STEPS = 3


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        from mmengine.model import MMDistributedDataParallel
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import init_default_scope
        from test_seg_calibration_stage import _batch, _stage2_model

        import disalign_seg  # noqa: F401

        init_default_scope("mmseg")
        torch.manual_seed(0)  # same initial weights on both ranks, as from one checkpoint
        model = _stage2_model()
        ddp = MMDistributedDataParallel(module=model)
        optim = build_optim_wrapper(
            model, dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.5, momentum=0.9))
        )
        torch.manual_seed(100 + rank)  # different data on each rank
        ddp.train()
        for _ in range(STEPS):
            ddp.train_step(_batch(), optim)
        state = {
            k: v.detach().clone() for k, v in model.decode_head.calibration.state_dict().items()
        }
        torch.save(state, os.path.join(out_dir, f"rank{rank}.pth"))
    finally:
        dist.destroy_process_group()


def test_stage2_under_ddp_gloo(tmp_path):
    port = _free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pth")
    r1 = torch.load(tmp_path / "rank1.pth")
    assert set(r0) == {"alpha", "beta", "confidence_weight", "confidence_bias"}
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key  # gradients were all-reduced
    assert torch.count_nonzero(r0["beta"]) > 0  # and the calibration did train

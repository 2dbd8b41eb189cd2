"""Stage 2 under DistributedDataParallel with a 2-process gloo group on CPU: mmengine's
MMDistributedDataParallel and train_step, as MMPretrain's dist_train.sh would run it
(``tests/mmengine_ddp_testing.py`` says why not dist_train.sh itself)."""

import torch
from cls_testing import CALIBRATION, batch
from mmengine_ddp_testing import train_calibration_in_gloo_group


def rank_batch(rank, step):
    return batch(seed=100 * rank + step)  # different data on each rank


def calibration(model):
    return model.head.calibration


def test_stage2_under_ddp_gloo(tmp_path):
    r0, r1 = train_calibration_in_gloo_group(
        str(tmp_path),
        "mmpretrain",
        build_model="test_cls_calibration_stage:stage2_model",
        batch=f"{__name__}:rank_batch",
        calibration=f"{__name__}:calibration",
    )
    assert set(r0) == CALIBRATION
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key  # gradients were all-reduced
    assert torch.count_nonzero(r0["beta"]) > 0  # and the calibration did train

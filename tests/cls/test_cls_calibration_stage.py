"""The calibration stage: only alpha, beta and the confidence train; every other tensor
(BatchNorm statistics included) stays bitwise unchanged over training steps."""

import pytest
import torch
from cls_testing import (
    CALIBRATION,
    COSINE_HEAD,
    COUNTS,
    LINEAR_HEAD,
    batch,
    disalign_head_cfg,
    tiny_classifier_cfg,
)
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS

from disalign_core import is_eval_locked


def stage2_model(head_cfg=LINEAR_HEAD, **extra):
    head = disalign_head_cfg(
        head_cfg, loss=dict(type="GRWCrossEntropyLoss", class_frequencies=COUNTS, rho=1.2)
    )
    return MODELS.build(tiny_classifier_cfg(head, classifier="DisAlignImageClassifier", **extra))


@pytest.mark.parametrize("head_cfg", [LINEAR_HEAD, COSINE_HEAD], ids=["linear", "cosine"])
def test_only_calibration_trains_and_frozen_tensors_stay_bitwise(head_cfg):
    model = stage2_model(head_cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(trainable) == sorted(f"head.calibration.{n}" for n in CALIBRATION)
    assert model.trainable_parameter_names == trainable
    before = {k: v.clone() for k, v in model.state_dict().items()}

    # The optimizer as the runner builds it: SGD with momentum and weight decay over all
    # parameters (mmengine's default constructor includes the frozen ones).
    optim = build_optim_wrapper(
        model,
        dict(
            type="OptimWrapper", optimizer=dict(type="SGD", lr=0.5, momentum=0.9, weight_decay=0.01)
        ),
    )
    assert sum(len(g["params"]) for g in optim.optimizer.param_groups) == len(
        list(model.parameters())
    )
    model.train()  # as mmengine's train loop does: frozen parts must stay in eval mode
    assert is_eval_locked(model.backbone) and not model.backbone.training
    assert not model.head.fc.training
    for step in range(3):
        model.train_step(batch(seed=step), optim)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= {f"head.calibration.{n}" for n in CALIBRATION}
    assert "head.calibration.beta" in changed and "head.calibration.alpha" in changed


def test_calibration_stage_needs_a_disalign_head():
    with pytest.raises(ValueError, match="no DisAlign calibration parameters") as e:
        MODELS.build(tiny_classifier_cfg(LINEAR_HEAD, classifier="DisAlignImageClassifier"))
    assert "model.head.type" in str(e.value) and "model.freeze_for_calibration" in str(e.value)
    plain = MODELS.build(
        tiny_classifier_cfg(
            disalign_head_cfg(LINEAR_HEAD),
            classifier="DisAlignImageClassifier",
            freeze_for_calibration=False,
        )
    )
    assert all(p.requires_grad for p in plain.parameters())


def test_stage1_checkpoint_loads_into_the_frozen_model(tmp_path):
    stage1 = MODELS.build(tiny_classifier_cfg(LINEAR_HEAD))
    for m in stage1.modules():  # non-trivial BN statistics, so that landing them shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_()
    path = tmp_path / "stage1.pth"
    torch.save({"state_dict": stage1.state_dict(), "meta": {}}, path)
    model = stage2_model(stage1_checkpoint=str(path))
    model.init_weights()  # what the runner calls before training
    state = model.state_dict()
    for key, value in stage1.state_dict().items():
        assert torch.equal(state[key], value), key
    x = torch.rand(2, 3, 32, 32)
    stage1.eval(), model.eval()
    torch.testing.assert_close(model(x), stage1(x), rtol=0, atol=0)  # identity at the start

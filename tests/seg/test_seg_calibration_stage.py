import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from seg_testing import ASPP_HEAD, FCN_HEAD, NUM_CLASSES, disalign_head_cfg, tiny_segmentor_cfg

from disalign_core import is_eval_locked

CALIBRATION = {"alpha", "beta", "confidence_weight", "confidence_bias"}


def _batch(n=2, size=32):
    samples = []
    for _ in range(n):
        s = SegDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, NUM_CLASSES, (1, size, size)))
        samples.append(s)
    return dict(inputs=[torch.rand(3, size, size) * 255 for _ in range(n)], data_samples=samples)


def _stage2_model(head_cfg=FCN_HEAD, aux_loss_weight=0.0):
    head = disalign_head_cfg(
        head_cfg,
        loss_decode=dict(type="GRWCrossEntropyLoss", class_frequencies=[60, 25, 10, 4, 1], rho=0.3),
    )
    if head["head"] == "DepthwiseSeparableASPPHead":
        head.update(in_index=3, c1_in_channels=8)
    return MODELS.build(
        tiny_segmentor_cfg(
            head, aux_loss_weight=aux_loss_weight, segmentor="DisAlignEncoderDecoder"
        )
    )


@pytest.mark.parametrize("head_cfg", [FCN_HEAD, ASPP_HEAD], ids=["fcn", "deeplabv3plus"])
def test_only_calibration_trains_and_frozen_tensors_stay_bitwise(head_cfg):
    model = _stage2_model(head_cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(trainable) == sorted(f"decode_head.calibration.{n}" for n in CALIBRATION)
    assert model.trainable_parameter_names == trainable
    before = {k: v.clone() for k, v in model.state_dict().items()}

    # The optimizer as the runner builds it: SGD with momentum and weight decay over all
    # parameters of the model (mmengine's default constructor includes frozen ones).
    optim = build_optim_wrapper(
        model,
        dict(
            type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=0.01)
        ),
    )
    in_optimizer = sum(len(g["params"]) for g in optim.optimizer.param_groups)
    assert in_optimizer == len(list(model.parameters()))
    model.train()  # as mmengine's train loop does: frozen parts must stay in eval mode
    assert is_eval_locked(model.backbone) and not model.backbone.training
    assert not model.auxiliary_head.training
    for _ in range(3):
        data = model.data_preprocessor(_batch(), True)
        losses = model(**data, mode="loss")
        loss, _ = model.parse_losses(losses)
        optim.update_params(loss)

    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"decode_head.calibration.{n}" for n in CALIBRATION}
    # BatchNorm statistics are among the unchanged tensors.
    assert any("running_mean" in k for k in before)


def test_auxiliary_head_with_zero_weight_does_not_break_backward():
    model = _stage2_model(aux_loss_weight=0.0)
    model.train()
    data = model.data_preprocessor(_batch(), True)
    losses = model(**data, mode="loss")
    assert "aux.loss_ce" in losses and float(losses["aux.loss_ce"]) == 0.0
    assert not losses["aux.loss_ce"].requires_grad  # frozen head: no path to any parameter
    loss, _ = model.parse_losses(losses)
    loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name


def test_freezing_without_disalign_head_is_a_clear_error():
    with pytest.raises(ValueError, match="no DisAlign calibration parameters") as e:
        MODELS.build(
            tiny_segmentor_cfg(copy.deepcopy(FCN_HEAD), segmentor="DisAlignEncoderDecoder")
        )
    assert "model.decode_head.type" in str(e.value)
    assert "model.freeze_for_calibration" in str(e.value)


def test_freeze_can_be_switched_off():
    model = MODELS.build(
        tiny_segmentor_cfg(
            disalign_head_cfg(FCN_HEAD),
            segmentor="DisAlignEncoderDecoder",
            freeze_for_calibration=False,
        )
    )
    assert all(p.requires_grad for p in model.parameters())


def test_authors_confidence_norm_trains_in_stage2_and_nothing_else_moves():
    head = disalign_head_cfg(
        FCN_HEAD,
        calibration=dict(confidence="input_bn_relu"),
        loss_decode=dict(type="GRWCrossEntropyLoss", class_frequencies=[60, 25, 10, 4, 1]),
    )
    model = MODELS.build(
        tiny_segmentor_cfg(head, aux_loss_weight=0.0, segmentor="DisAlignEncoderDecoder")
    )
    norm_params = {"confidence_norm.weight", "confidence_norm.bias"}
    expected = {f"decode_head.calibration.{n}" for n in {"alpha", "beta", "confidence_weight"}}
    expected |= {f"decode_head.calibration.{n}" for n in norm_params}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    optim = build_optim_wrapper(
        model, dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1, momentum=0.9))
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert model.decode_head.calibration.confidence_norm.training  # not eval-locked
    assert not model.backbone.training  # the frozen backbone's BN stays in eval mode
    for _ in range(2):
        data = model.data_preprocessor(_batch(), True)
        optim.update_params(model.parse_losses(model(**data, mode="loss"))[0])
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    stats = {"running_mean", "running_var", "num_batches_tracked"}
    assert changed == expected | {f"decode_head.calibration.confidence_norm.{s}" for s in stats}


def test_authors_confidence_follows_the_heads_syncbn():
    head = disalign_head_cfg(
        dict(FCN_HEAD, norm_cfg=dict(type="SyncBN", requires_grad=True)),
        calibration=dict(confidence="input_bn_relu"),
    )
    built = MODELS.build(dict(head, in_channels=8, channels=4))
    assert isinstance(built.calibration.confidence_norm, torch.nn.SyncBatchNorm)
    plain = MODELS.build(dict(disalign_head_cfg(FCN_HEAD), calibration=dict(confidence="input")))
    assert plain.calibration.confidence_norm is None

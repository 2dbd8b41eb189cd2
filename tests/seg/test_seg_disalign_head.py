import copy

import pytest
import torch
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmengine.structures import PixelData
from mmseg.models.decode_heads import DepthwiseSeparableASPPHead, FCNHead
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from seg_testing import ASPP_HEAD, FCN_HEAD, NUM_CLASSES, disalign_head_cfg, tiny_segmentor_cfg

from disalign_core import DisAlignCalibration
from disalign_seg import DisAlignHead, calibrated_head_class


def _inputs(head_cfg):
    # FCN reads one 8-channel map; DeepLabV3+ also the 4-channel low-level map (c1).
    if head_cfg["type"] == "FCNHead":
        return [torch.randn(2, 8, 11, 13)]
    return [torch.randn(2, 4, 22, 26), torch.randn(2, 8, 11, 13)]


def _plain_and_calibrated(head_cfg):
    plain = MODELS.build(copy.deepcopy(head_cfg))
    calibrated = MODELS.build(disalign_head_cfg(head_cfg))
    calibrated.load_state_dict(plain.state_dict(), strict=False)
    plain.eval(), calibrated.eval()
    return plain, calibrated


@pytest.mark.parametrize("head_cfg", [FCN_HEAD, ASPP_HEAD], ids=["fcn", "deeplabv3plus"])
def test_identity_at_start_and_shapes(head_cfg):
    plain, calibrated = _plain_and_calibrated(head_cfg)
    inputs = _inputs(head_cfg)
    with torch.no_grad():
        expected = plain(inputs)
        out = calibrated(inputs)
    # FCN predicts at its input's resolution, DeepLabV3+ at the low-level feature's.
    size = (11, 13) if head_cfg["type"] == "FCNHead" else (22, 26)
    assert out.shape == (2, NUM_CLASSES) + size
    assert torch.equal(out, expected)


@pytest.mark.parametrize("head_cfg", [FCN_HEAD, ASPP_HEAD], ids=["fcn", "deeplabv3plus"])
def test_calibration_changes_logits_by_formula(head_cfg):
    plain, calibrated = _plain_and_calibrated(head_cfg)
    cal = calibrated.calibration
    with torch.no_grad():
        cal.alpha.copy_(torch.linspace(-0.5, 0.5, NUM_CLASSES))
        cal.beta.copy_(torch.linspace(1.0, -1.0, NUM_CLASSES))
        cal.confidence_weight.normal_()
    feats = {}
    # The confidence must come from conv_seg's input (dropout is off in eval).
    calibrated.conv_seg.register_forward_pre_hook(lambda m, a: feats.update(x=a[0]))
    inputs = _inputs(head_cfg)
    with torch.no_grad():
        z = plain(inputs)
        out = calibrated(inputs)
        x = feats["x"]
        sigma = torch.sigmoid(
            torch.einsum("nchw,c->nhw", x, cal.confidence_weight)[:, None] + cal.confidence_bias
        )
        ref = (1 + sigma * cal.alpha.view(1, -1, 1, 1)) * z + sigma * cal.beta.view(1, -1, 1, 1)
    assert torch.allclose(out, ref, atol=1e-5)
    assert not torch.allclose(out, z)


def test_build_forms_give_the_same_class_and_names():
    by_name = MODELS.build(disalign_head_cfg(FCN_HEAD))
    by_dict = MODELS.build(dict(type="DisAlignHead", head=copy.deepcopy(FCN_HEAD)))
    direct = DisAlignHead(head=FCNHead, **{k: v for k, v in FCN_HEAD.items() if k != "type"})
    for head in (by_name, by_dict, direct):
        assert type(head) is calibrated_head_class("FCNHead")
        assert isinstance(head, DisAlignHead) and isinstance(head, FCNHead)
        assert isinstance(head.calibration, DisAlignCalibration)
    plain_keys = set(MODELS.build(copy.deepcopy(FCN_HEAD)).state_dict())
    keys = set(by_name.state_dict())
    assert plain_keys < keys
    assert keys - plain_keys == {
        "calibration.alpha",
        "calibration.beta",
        "calibration.confidence_weight",
        "calibration.confidence_bias",
    }
    aspp = MODELS.build(disalign_head_cfg(ASPP_HEAD))
    assert isinstance(aspp, DepthwiseSeparableASPPHead)


def test_calibration_options_are_passed():
    head = MODELS.build(
        disalign_head_cfg(FCN_HEAD, calibration=dict(use_margin=False, confidence="constant"))
    )
    assert head.calibration.beta is None and head.calibration.confidence_weight is None
    with pytest.raises(ValueError, match="confidence"):
        MODELS.build(disalign_head_cfg(FCN_HEAD, calibration=dict(confidence="bogus")))


def test_bad_heads_are_clear_errors():
    with pytest.raises(KeyError, match="NoSuchHead"):
        MODELS.build(dict(type="DisAlignHead", head="NoSuchHead"))
    with pytest.raises(TypeError, match="BaseDecodeHead"):
        MODELS.build(dict(type="DisAlignHead", head="ResNetV1c"))
    with pytest.raises(TypeError, match="nest"):
        MODELS.build(dict(type="DisAlignHead", head=calibrated_head_class("FCNHead")))
    with pytest.raises(TypeError, match="head="):
        DisAlignHead()


class _NoClassifierHead(FCNHead):
    """A decode head that classifies without conv_seg (as mmseg's SANHead)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        del self.conv_seg


def test_head_without_conv_seg_is_named_whatever_the_class_hierarchy():
    fcn_args = {k: v for k, v in FCN_HEAD.items() if k != "type"}
    with pytest.raises(TypeError, match="_NoClassifierHead has no conv_seg classifier"):
        DisAlignHead(head=_NoClassifierHead, **fcn_args)

    # A subclass of the calibrated class moves the inner head one step down the MRO.
    class Subclassed(calibrated_head_class(_NoClassifierHead)):
        pass

    assert Subclassed.inner_head is _NoClassifierHead
    with pytest.raises(TypeError, match="_NoClassifierHead has no conv_seg classifier"):
        Subclassed(head=_NoClassifierHead, **fcn_args)


def test_init_weights_keeps_identity():
    head = MODELS.build(disalign_head_cfg(FCN_HEAD))
    head.init_weights()
    assert torch.count_nonzero(head.calibration.alpha) == 0
    assert torch.count_nonzero(head.calibration.beta) == 0


def test_loss_and_predict_go_through_mmseg_paths():
    head = MODELS.build(
        disalign_head_cfg(
            FCN_HEAD,
            loss_decode=dict(
                type="GRWCrossEntropyLoss", class_frequencies=[50, 20, 10, 5, 1], rho=0.3
            ),
        )
    )
    inputs = _inputs(FCN_HEAD)
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, NUM_CLASSES, (1, 22, 26)))
        samples.append(s)
    losses = head.loss(inputs, samples, train_cfg={})
    assert set(losses) == {"loss_grw_ce", "acc_seg"}
    losses["loss_grw_ce"].backward()
    assert head.calibration.alpha.grad is not None
    head.eval()
    seg = head.predict(inputs, [dict(img_shape=(22, 26), pad_shape=(22, 26))], test_cfg={})
    assert seg.shape == (2, NUM_CLASSES, 22, 26)


def test_plain_stage1_checkpoint_loads_completely(tmp_path):
    plain = MODELS.build(tiny_segmentor_cfg(copy.deepcopy(FCN_HEAD)))
    with torch.no_grad():  # no tensor at its default value, BN statistics included
        for t in plain.state_dict().values():
            if t.is_floating_point():
                t.mul_(1 + 0.1 * torch.rand_like(t)).add_(0.01 * torch.rand_like(t))
    ckpt = str(tmp_path / "stage1.pth")
    save_checkpoint(dict(state_dict=plain.state_dict(), meta=dict(iter=10)), ckpt)

    wrapped = MODELS.build(
        tiny_segmentor_cfg(disalign_head_cfg(FCN_HEAD), segmentor="DisAlignEncoderDecoder")
    )
    load_checkpoint(wrapped, ckpt, map_location="cpu")
    wrapped_state = wrapped.state_dict()
    for key, value in plain.state_dict().items():
        assert torch.equal(wrapped_state[key], value), key
    assert set(wrapped_state) - set(plain.state_dict()) == {
        f"decode_head.calibration.{n}"
        for n in ("alpha", "beta", "confidence_weight", "confidence_bias")
    }
    assert torch.count_nonzero(wrapped.decode_head.calibration.alpha) == 0
    # The calibrated model predicts exactly what the stage-1 model predicts.
    plain.eval(), wrapped.eval()
    img = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain(img, mode="tensor"), wrapped(img, mode="tensor"))


def test_checkpoint_with_other_class_count_is_an_error(tmp_path):
    other = dict(copy.deepcopy(FCN_HEAD), num_classes=NUM_CLASSES + 2)
    plain = MODELS.build(tiny_segmentor_cfg(other))
    ckpt = str(tmp_path / "stage1_7cls.pth")
    save_checkpoint(plain.state_dict(), ckpt)
    wrapped = MODELS.build(tiny_segmentor_cfg(disalign_head_cfg(FCN_HEAD)))
    with pytest.raises(ValueError, match=r"conv_seg.weight has 7 classes.*num_classes=5"):
        load_checkpoint(wrapped, ckpt, map_location="cpu")

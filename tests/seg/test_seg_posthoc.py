"""Training-free calibration of a stage-1 segmentor (posthoc=...) and DisAlign's prior start
(calibration=dict(margin_init='prior')) in DisAlignHead."""

import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from seg_testing import FCN_HEAD, NUM_CLASSES, disalign_head_cfg, tiny_segmentor_cfg

from disalign_core import logit_adjustment_margin, tau_normalize
from disalign_mmengine import load_stage1_checkpoint

# A toy prior steep enough to change arg-maxes: class 0 holds 99.99% of the pixels.
COUNTS = [1e6, 50.0, 10.0, 2.0, 1.0]
GRW = dict(type="GRWCrossEntropyLoss", class_frequencies=COUNTS, rho=0.3)


def _stage1_checkpoint(tmp_path):
    """A plain FCN stage-1 model with non-default weights, saved as mmengine does."""
    plain = MODELS.build(tiny_segmentor_cfg(copy.deepcopy(FCN_HEAD)))
    with torch.no_grad():
        for t in plain.state_dict().values():
            if t.is_floating_point():
                t.mul_(1 + 0.1 * torch.rand_like(t)).add_(0.01 * torch.rand_like(t))
    ckpt = str(tmp_path / "stage1.pth")
    save_checkpoint(dict(state_dict=plain.state_dict(), meta=dict(iter=10)), ckpt)
    return plain.eval(), ckpt


def _head(**kwargs):
    """The stage-2 head config (GRW loss) with ``kwargs``; ``loss_decode=None``: mmseg's CE."""
    head = disalign_head_cfg(FCN_HEAD, **dict(dict(loss_decode=GRW), **kwargs))
    if head["loss_decode"] is None:
        del head["loss_decode"]
    return head


def _stage2(segmentor="DisAlignEncoderDecoder", **head_kwargs):
    return MODELS.build(tiny_segmentor_cfg(_head(**head_kwargs), segmentor=segmentor))


def test_logit_adjustment_of_a_stage1_checkpoint(tmp_path):
    plain, ckpt = _stage1_checkpoint(tmp_path)
    # The stage-2 config plus one option; the class prior from its GRW loss; the checkpoint
    # loaded as tools/test.py does (mmengine's load_checkpoint, strict=False).
    model = _stage2(posthoc="logit_adjustment").eval()
    load_checkpoint(model, ckpt, map_location="cpu")
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        z = plain(img, mode="tensor")
        out = model(img, mode="tensor")
    margin = logit_adjustment_margin(COUNTS, 1.0).view(1, -1, 1, 1)
    assert torch.allclose(out, z + margin, atol=1e-5)
    assert not torch.equal(out.argmax(1), z.argmax(1))  # the prior moved predictions
    log_pi = torch.log(torch.tensor(COUNTS) / sum(COUNTS)).view(1, -1, 1, 1)
    assert torch.allclose(out.softmax(1), (z - log_pi).softmax(1), atol=1e-5)
    # mmseg's predict path (logits resized to the image, arg-max): the same, as the shift
    # commutes with the bilinear resize.
    model.test_cfg = plain.test_cfg = ConfigDict(mode="whole")  # as the runner builds them
    meta = dict(img_shape=(32, 32), ori_shape=(32, 32))
    with torch.no_grad():
        pred = model.predict(img[:1], [SegDataSample(metainfo=meta)])[0]
        ref = plain.predict(img[:1], [SegDataSample(metainfo=meta)])[0]
    assert torch.allclose(pred.seg_logits.data, ref.seg_logits.data + margin[0], atol=1e-5)
    assert torch.equal(pred.pred_sem_seg.data[0], pred.seg_logits.data.argmax(0))
    assert not torch.equal(pred.pred_sem_seg.data, ref.pred_sem_seg.data)


def test_tau_norm_and_tau_zero(tmp_path):
    plain, ckpt = _stage1_checkpoint(tmp_path)
    model = _stage2(
        segmentor="EncoderDecoder", posthoc=dict(type="tau_norm", tau=0.5), loss_decode=None
    ).eval()
    load_checkpoint(model, ckpt, map_location="cpu")
    img = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = model(img, mode="tensor")
        conv = plain.decode_head.conv_seg
        conv.weight.copy_(tau_normalize(conv.weight, 0.5)[0])  # Kang et al.: rows / |w|^tau
        assert torch.allclose(out, plain(img, mode="tensor"), atol=1e-5)
    # tau = 0: the stage-1 logits exactly, for both.
    fresh = MODELS.build(tiny_segmentor_cfg(copy.deepcopy(FCN_HEAD))).eval()
    load_checkpoint(fresh, ckpt, map_location="cpu")
    for posthoc in (dict(type="logit_adjustment", tau=0.0), dict(type="tau_norm", tau=0)):
        identity = _stage2(posthoc=posthoc).eval()
        load_checkpoint(identity, ckpt, map_location="cpu")
        with torch.no_grad():
            assert torch.equal(identity(img, mode="tensor"), fresh(img, mode="tensor"))


def test_posthoc_has_nothing_to_train():
    model = _stage2(posthoc=dict(type="logit_adjustment", tau=1.0, class_frequencies=COUNTS))
    head = model.decode_head
    assert head.posthoc.state_dict() == {} and list(head.posthoc.parameters()) == []
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=torch.randint(0, NUM_CLASSES, (1, 32, 32)))
    with pytest.raises(
        ValueError, match=r"model\.decode_head\.posthoc='logit_adjustment'.*nothing"
    ):
        model.loss(torch.randn(1, 3, 32, 32), [s])


def test_prior_start_of_stage2_survives_init_stage1_load_and_checkpoints(tmp_path):
    _, ckpt = _stage1_checkpoint(tmp_path)
    model = _stage2(calibration=dict(margin_init="prior", prior_tau=0.5))
    cal = model.decode_head.calibration
    expected = logit_adjustment_margin(COUNTS, 0.5) / 0.5  # sigma_0 = 0.5 ("input")
    assert torch.allclose(cal.beta.detach(), expected, atol=1e-6)
    assert model.trainable_parameter_names == [
        f"decode_head.calibration.{n}"
        for n in ("alpha", "beta", "confidence_weight", "confidence_bias")
    ]
    model.init_weights()  # what the runner calls before training
    load_stage1_checkpoint(model, ckpt)
    assert torch.allclose(cal.beta.detach(), expected, atol=1e-6)
    # A stage-2 checkpoint holds beta: it loads (and resumes) into a freshly built model.
    with torch.no_grad():
        cal.beta.add_(0.25)
    ckpt2 = str(tmp_path / "stage2.pth")
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict(iter=4)), ckpt2)
    again = _stage2(calibration=dict(margin_init="prior", prior_tau=0.5))
    load_checkpoint(again, ckpt2, map_location="cpu", strict=True)
    assert torch.equal(again.decode_head.calibration.beta, cal.beta)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(posthoc="logit_adjustment", loss_decode=None),
            r"model\.decode_head\.posthoc needs the training class pixel frequencies",
        ),
        (
            dict(calibration=dict(margin_init="prior"), loss_decode=None),
            r"model\.decode_head\.calibration needs the training class pixel frequencies",
        ),
        (
            dict(posthoc=dict(type="logit_adjustment", class_frequencies=[3, 2, 1])),
            r"model\.decode_head\.posthoc\.class_frequencies\) has 3 entries but the model has 5",
        ),
        (
            dict(posthoc=dict(type="logit_adjustment", tau=-1)),
            r"model\.decode_head\.posthoc\.tau.*-1",
        ),
        (
            dict(calibration=dict(margin_init="prior", prior_tau=-2.0)),
            r"model\.decode_head\.calibration\.prior_tau.*-2",
        ),
        (
            dict(posthoc=dict(type="logit_adjustment", class_frequencies=[5, 0, 3, 2, 1])),
            r"model\.decode_head\.posthoc\.class_frequencies.*count 0\): 1",
        ),
        (
            dict(
                loss_decode=dict(GRW, class_frequencies=[5, 4, 3, 0, 1], zero_count="warn"),
                posthoc="logit_adjustment",
            ),
            r"model\.decode_head\.loss_decode\.class_frequencies.*count 0\): 3",
        ),
        (
            dict(calibration=dict(class_frequencies=COUNTS)),
            r"calibration\.class_frequencies is only read with margin_init='prior'",
        ),
        (dict(posthoc=dict(type="tau", tau=1.0)), r"model\.decode_head\.posthoc\.type"),
    ],
)
@pytest.mark.filterwarnings("ignore:1 class\\(es\\) have no training examples")
def test_bad_options_name_the_config_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(tiny_segmentor_cfg(_head(**kwargs)))

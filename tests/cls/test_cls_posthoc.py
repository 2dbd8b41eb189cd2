"""Training-free calibration of a stage-1 classifier (posthoc=...) and DisAlign's prior start
(calibration=dict(margin_init='prior')) in DisAlignClsHead; logit adjustment of a stage-1
checkpoint through MMPretrain's stock tools/test.py."""

import math
import os
import pickle
import re

import pytest
import torch
from cls_testing import (
    CALIBRATION,
    CHANNELS,
    COSINE_HEAD,
    COUNTS,
    LINEAR_HEAD,
    MMPRETRAIN_TOOLS,
    STACKED_HEAD,
    TINY,
    batch,
    disalign_head_cfg,
    run_tool,
    tiny_classifier_cfg,
)
from mmengine.config import Config
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmpretrain.registry import MODELS

from disalign_core import logit_adjustment_margin, tau_normalize
from disalign_mmengine import load_stage1_checkpoint

GRW = dict(type="GRWCrossEntropyLoss", class_frequencies=COUNTS, rho=1.2)
STAGE1 = os.path.join(TINY, "resnet18-tiny_1xb64-400it_synthetic-32x32.py")
STAGE2 = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")


def _plain_and_posthoc(head_cfg, **kwargs):
    plain = MODELS.build(head_cfg).eval()
    head = MODELS.build(disalign_head_cfg(head_cfg, **kwargs)).eval()
    # a stage-1 checkpoint of the plain head: only the (unused) calibration is missing
    missing = head.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert set(missing) == {f"calibration.{n}" for n in CALIBRATION}
    return plain, head


def test_logit_adjustment_of_the_stage1_logits():
    plain, head = _plain_and_posthoc(LINEAR_HEAD, loss=GRW, posthoc="logit_adjustment")
    with torch.no_grad():
        plain.fc.weight.mul_(0.01)  # flat logits: the prior decides
        head.fc.weight.copy_(plain.fc.weight)
    feats = (torch.randn(16, CHANNELS),)
    z, out = plain(feats), head(feats)
    torch.testing.assert_close(out, z + logit_adjustment_margin(COUNTS, 1.0))
    log_pi = torch.log(torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS))
    torch.testing.assert_close(out.softmax(1), (z - log_pi).softmax(1))
    # MMPretrain's predict: scores and labels from the adjusted logits.
    pred = torch.stack([s.pred_label for s in head.predict(feats)]).flatten()
    before = torch.stack([s.pred_label for s in plain.predict(feats)]).flatten()
    assert torch.equal(pred, out.argmax(1)) and not torch.equal(pred, before)
    assert pred.float().mean() > before.float().mean()  # towards the rare (later) classes


def test_class_frequencies_from_an_annotation_list(tmp_path):
    (tmp_path / "train.txt").write_text(
        "".join(f"img_{c}_{i}.png {c}\n" for c, n in enumerate(COUNTS) for i in range(n))
    )
    source = dict(type="CustomDataset", data_root=str(tmp_path), ann_file="train.txt")
    posthoc = dict(type="logit_adjustment", tau=0.5, class_frequencies=source)
    _, head = _plain_and_posthoc(LINEAR_HEAD, posthoc=posthoc)
    torch.testing.assert_close(head.posthoc.margin, logit_adjustment_margin(COUNTS, 0.5))


@pytest.mark.parametrize("head_cfg", [LINEAR_HEAD, STACKED_HEAD], ids=["linear", "stacked"])
def test_tau_norm_is_the_classifier_with_normalised_rows(head_cfg):
    plain, head = _plain_and_posthoc(head_cfg, posthoc=dict(type="tau_norm", tau=0.5))
    feats = (torch.randn(6, CHANNELS),)
    out = head(feats)
    linear = head.get_submodule(head._linear_name)
    with torch.no_grad():
        plain_linear = plain.get_submodule(head._linear_name)
        plain_linear.weight.copy_(tau_normalize(linear.weight, 0.5)[0])
    torch.testing.assert_close(out, plain(feats))


def test_tau_zero_is_the_identity_and_cosine_tau_norm_is_refused():
    for posthoc in (dict(type="tau_norm", tau=0.0), dict(type="logit_adjustment", tau=0)):
        plain, head = _plain_and_posthoc(LINEAR_HEAD, loss=GRW, posthoc=posthoc)
        feats = (torch.randn(4, CHANNELS),)
        assert torch.equal(head(feats), plain(feats))
    with pytest.raises(ValueError, match=r"model\.head\.posthoc='tau_norm' changes nothing"):
        MODELS.build(disalign_head_cfg(COSINE_HEAD, posthoc="tau_norm"))
    plain, head = _plain_and_posthoc(COSINE_HEAD, loss=GRW, posthoc="logit_adjustment")
    feats = (torch.randn(4, CHANNELS),)
    torch.testing.assert_close(head(feats), plain(feats) + logit_adjustment_margin(COUNTS, 1.0))


def test_posthoc_classifier_tests_but_does_not_train():
    model = MODELS.build(
        tiny_classifier_cfg(
            disalign_head_cfg(LINEAR_HEAD, loss=GRW, posthoc="logit_adjustment"),
            classifier="DisAlignImageClassifier",
        )
    )
    data = model.data_preprocessor(batch(4, seed=0), True)
    assert len(model.test_step(batch(4, seed=0))) == 4
    with pytest.raises(ValueError, match=r"model\.head\.posthoc='logit_adjustment'.*nothing"):
        model.loss(data["inputs"], data["data_samples"])


def test_prior_start_of_stage2_survives_init_stage1_load_and_checkpoints(tmp_path):
    plain = MODELS.build(tiny_classifier_cfg(LINEAR_HEAD))
    ckpt = str(tmp_path / "stage1.pth")
    save_checkpoint(dict(state_dict=plain.state_dict(), meta=dict(iter=3)), ckpt)
    cfg = tiny_classifier_cfg(
        disalign_head_cfg(LINEAR_HEAD, loss=GRW, calibration=dict(margin_init="prior")),
        classifier="DisAlignImageClassifier",
    )
    model = MODELS.build(cfg)
    cal = model.head.calibration
    expected = logit_adjustment_margin(COUNTS, 1.0) / 0.5  # sigma_0 = 0.5 ("input")
    torch.testing.assert_close(cal.beta.detach(), expected)
    assert set(model.trainable_parameter_names) == {f"head.calibration.{n}" for n in CALIBRATION}
    model.init_weights()
    load_stage1_checkpoint(model, ckpt)
    torch.testing.assert_close(cal.beta.detach(), expected)
    with torch.no_grad():
        cal.beta.add_(0.25)
    ckpt2 = str(tmp_path / "stage2.pth")
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict(iter=4)), ckpt2)
    again = MODELS.build(cfg)
    load_checkpoint(again, ckpt2, map_location="cpu", strict=True)
    assert torch.equal(again.head.calibration.beta, cal.beta)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(posthoc="logit_adjustment"), r"model\.head\.posthoc needs the training images"),
        (
            dict(calibration=dict(margin_init="prior")),
            r"model\.head\.calibration needs the training images",
        ),
        (
            dict(posthoc=dict(type="logit_adjustment", class_frequencies=[3, 2, 1])),
            r"model\.head\.posthoc\.class_frequencies: got counts for 3 classes.*num_classes=5",
        ),
        (dict(posthoc=dict(type="tau_norm", tau=-0.5)), r"model\.head\.posthoc\.tau.*-0\.5"),
        (
            dict(loss=GRW, calibration=dict(margin_init="prior", prior_tau=float("inf"))),
            r"model\.head\.calibration\.prior_tau.*inf",
        ),
        (
            dict(posthoc=dict(type="logit_adjustment", class_frequencies=[5, 4, 0, 2, 1])),
            r"model\.head\.posthoc\.class_frequencies.*count 0\): 2",
        ),
        (
            dict(loss=GRW, calibration=dict(class_frequencies=COUNTS)),
            r"model\.head\.calibration\.class_frequencies is only read with margin_init='prior'",
        ),
        (dict(posthoc=dict(type="logit_adjust")), r"model\.head\.posthoc\.type must be one of"),
    ],
)
def test_bad_options_name_the_config_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(disalign_head_cfg(LINEAR_HEAD, **kwargs))


def _tiny_data(root, num_classes=16, test_per_class=2):
    """The tiny configs' data layout: test images and the two annotation lists. The training
    list only gives the class counts (3 (16 - c)^2 images for class c: 768 down to 3), so its
    images are not written; the test images are noise."""
    from PIL import Image

    os.makedirs(os.path.join(root, "meta"))
    os.makedirs(os.path.join(root, "test"))
    counts = [3 * (num_classes - c) ** 2 for c in range(num_classes)]
    with open(os.path.join(root, "meta", "train.txt"), "w") as f:
        f.writelines(f"train/{c}_{i}.png {c}\n" for c, n in enumerate(counts) for i in range(n))
    g = torch.Generator().manual_seed(0)
    with open(os.path.join(root, "meta", "test.txt"), "w") as f:
        for c in range(num_classes):
            for i in range(test_per_class):
                img = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8)
                Image.fromarray(img.numpy()).save(os.path.join(root, "test", f"{c}_{i}.png"))
                f.write(f"test/{c}_{i}.png {c}\n")
    return counts


def test_logit_adjustment_of_a_stage1_checkpoint_with_stock_test_script(tmp_path, monkeypatch):
    data = str(tmp_path / "data")
    counts = _tiny_data(data)
    monkeypatch.setenv("DISALIGN_CLS_DATA", data)
    env = dict(DISALIGN_CLS_DATA=data)
    # A stage-1 checkpoint of the tiny config's model (untrained: no training is needed to
    # check what the test script computes).
    model = MODELS.build(Config.fromfile(STAGE1).model)
    ckpt = str(tmp_path / "stage1.pth")
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict(iter=0)), ckpt)
    test = os.path.join(MMPRETRAIN_TOOLS, "test.py")

    def run(config, name, *options):
        out = run_tool(
            [test, config, ckpt, "--work-dir", str(tmp_path / name), "--out-item", "pred"]
            + ["--out", str(tmp_path / f"{name}.pkl"), "--cfg-options"]
            + ["test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False"]
            + list(options),
            env=env,
        )
        for key in ("top1", "many_top1", "medium_top1", "few_top1"):
            assert re.search(rf"accuracy/{key}: \d", out), key
        with open(tmp_path / f"{name}.pkl", "rb") as f:
            return out, torch.stack([r["pred_score"] for r in pickle.load(f)])

    _, p1 = run(STAGE1, "stage1")
    # The stage-2 (DisAlign) config and one option; the prior from its GRW loss's annotation
    # list; tau set through the same option's key.
    out, p_la = run(
        STAGE2, "la", "model.head.posthoc.type=logit_adjustment", "model.head.posthoc.tau=0.5"
    )
    assert "missing keys in source state_dict: head.calibration.alpha" in out
    counts = torch.tensor(counts, dtype=torch.float64)
    log_pi = torch.log(counts / counts.sum())
    expected = (p1.double().log() - 0.5 * log_pi).softmax(1)
    assert torch.allclose(p_la.double(), expected, atol=1e-5)
    assert not torch.equal(p_la.argmax(1), p1.argmax(1))
    assert math.isclose(float(p_la.sum(1).mean()), 1.0, rel_tol=1e-5)

"""Whole tiny models built from the shipped configs: ROI heads, cascade stages, freezing,
and loading a stage-1 checkpoint into the calibration stage."""

import logging
import os

import pytest
import torch
from det_testing import CONFIGS, tiny_cfg
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from disalign_det import (
    DisAlignCascadeROIHeads,
    DisAlignCheckpointer,
    DisAlignFastRCNNOutputLayers,
    DisAlignRPN,
    DisAlignStandardROIHeads,
    freeze_for_calibration,
)

Q = os.path.join(CONFIGS, "quick_schedules")
STAGE2 = ["MODEL.DISALIGN.CALIBRATION", "True", "MODEL.DISALIGN.FREEZE", "True"]
K = 6


def cfg_for(arch, stage2=False, classifier="linear", num_classes=K, reweight=False, opts=()):
    name = {
        "mask": "mask_rcnn_tiny_instant_test.yaml",
        "cascade": "cascade_mask_rcnn_tiny_instant_test.yaml",
    }[arch]
    extra = opts
    # score threshold 0: barely trained models must still output boxes to compare
    opts = [
        "MODEL.ROI_HEADS.NUM_CLASSES",
        str(num_classes),
        "MODEL.DISALIGN.CLASSIFIER",
        classifier,
    ]
    opts += ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "20"]
    if stage2:
        opts += STAGE2
    if reweight:
        opts += ["MODEL.DISALIGN.REWEIGHT", "True", "MODEL.DISALIGN.FREQUENCY_FILE", reweight]
    return tiny_cfg(os.path.join(Q, name), opts + list(extra))


def batch(n=2, num_classes=K):
    """n 64x64 images, each with two objects (boxes and polygon masks)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        inst = Instances((64, 64))
        boxes = torch.tensor([[8.0, 8.0, 30.0, 30.0], [34.0, 30.0, 58.0, 56.0]])
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.tensor([i % num_classes, (i + 3) % num_classes])
        inst.gt_masks = PolygonMasks([[b[[0, 1, 2, 1, 2, 3, 0, 3]].tolist()] for b in boxes])
        out.append(
            {"image": torch.randint(0, 256, (3, 64, 64), generator=g).float(), "instances": inst}
        )
    return out


def predictors(model):
    return [m for m in model.modules() if isinstance(m, DisAlignFastRCNNOutputLayers)]


@pytest.mark.parametrize(
    "arch,heads", [("mask", DisAlignStandardROIHeads), ("cascade", DisAlignCascadeROIHeads)]
)
def test_roi_heads_registered_and_every_predictor_calibrated(arch, heads):
    model = build_model(cfg_for(arch, stage2=True))
    assert type(model.roi_heads) is heads
    preds = predictors(model)
    assert len(preds) == (3 if arch == "cascade" else 1)
    assert all(p.calibration is not None for p in preds)
    trainable = freeze_for_calibration(model)
    assert trainable and all(".calibration." in n for n in trainable)
    model.train()
    with EventStorage():
        losses = model(batch())
    # frozen RPN and mask head: no losses from them, only the box losses
    assert "loss_mask" not in losses and "loss_rpn_cls" not in losses
    sum(losses.values()).backward()
    for p in preds:  # every stage's calibration receives gradient
        assert p.calibration.beta.grad is not None and p.calibration.beta.grad.abs().sum() > 0
        assert p.cls_score.weight.grad is None


# RPN proposal counts with TRAIN != TEST, so that the mode the frozen RPN proposes in shows.
TOPK = [
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "150", "MODEL.RPN.PRE_NMS_TOPK_TEST", "100",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50", "MODEL.RPN.POST_NMS_TOPK_TEST", "20",
]  # fmt: skip


@pytest.mark.parametrize("arch", ["mask", "cascade"])
def test_frozen_rpn_proposes_with_training_counts_without_losses(arch):
    model = build_model(cfg_for(arch, stage2=True, opts=TOPK))
    assert type(model.proposal_generator) is DisAlignRPN
    freeze_for_calibration(model)
    per_image = []
    model.proposal_generator.register_forward_hook(
        lambda module, inputs, out: per_image.append([len(p) for p in out[0]])
    )
    model.train()  # as the trainer does
    with EventStorage() as storage:
        losses = model(batch())
    assert per_image[-1] == [50, 50]  # POST_NMS_TOPK_TRAIN, not _TEST
    assert not [k for k in losses if k.startswith("loss_rpn") or k == "loss_mask"], losses
    assert losses["loss_cls" if arch == "mask" else "loss_cls_stage0"].requires_grad
    assert "rpn/num_pos_anchors" not in storage.histories()  # no anchor labelling

    model.eval()
    with torch.no_grad():
        model([{"image": d["image"]} for d in batch()])
    assert per_image[-1] == [20, 20]  # POST_NMS_TOPK_TEST at test time


def test_stage1_rpn_is_detectron2s():
    """Not frozen, DisAlignRPN labels anchors and returns detectron2's RPN losses."""
    model = build_model(cfg_for("mask", opts=TOPK)).train()
    with EventStorage() as storage:
        losses = model(batch())
    assert losses["loss_rpn_cls"].requires_grad and losses["loss_rpn_loc"].requires_grad
    assert "rpn/num_pos_anchors" in storage.histories()


def test_plain_rpn_in_stage2_warns_and_still_trains(caplog):
    model = build_model(cfg_for("mask", stage2=True, opts=["MODEL.PROPOSAL_GENERATOR.NAME", "RPN"]))
    with caplog.at_level(logging.WARNING, logger="disalign_det"):
        freeze_for_calibration(model)
    assert "MODEL.PROPOSAL_GENERATOR.NAME is RPN" in caplog.text
    assert "DisAlignRPN" in caplog.text
    model.train()
    with EventStorage():
        losses = model(batch())
    assert not losses["loss_rpn_cls"].requires_grad  # computed for nothing
    sum(losses.values()).backward()
    assert model.roi_heads.box_predictor.calibration.beta.grad is not None


def test_all_cascade_stages_used_at_inference():
    model = build_model(cfg_for("cascade", stage2=True, classifier="cosine")).eval()
    images = [{"image": d["image"]} for d in batch(1)]
    with torch.no_grad():
        base = model(images)[0]["instances"].scores
        for stage in predictors(model):
            stage.calibration.beta.add_(2.0)
            moved = model(images)[0]["instances"].scores
            stage.calibration.beta.sub_(2.0)
            assert not torch.equal(moved[: len(base)], base[: len(moved)]) or len(moved) != len(
                base
            )


@pytest.mark.parametrize("arch", ["mask", "cascade"])
def test_frozen_tensors_bitwise_unchanged(arch):
    model = build_model(cfg_for(arch, stage2=True))
    freeze_for_calibration(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5, momentum=0.9)
    model.train()  # as detectron2's trainer does: frozen subtrees must stay in eval mode
    with EventStorage():
        for _ in range(3):
            loss = sum(model(batch()).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(".calibration." in k for k in changed), changed
    bn_stats = [
        k for k in before if k.endswith("running_mean") or k.endswith("num_batches_tracked")
    ]
    assert bn_stats and all(torch.equal(before[k], after[k]) for k in bn_stats)


def train_steps(model, steps=2):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    with EventStorage():
        for _ in range(steps):
            loss = sum(model(batch()).values())
            opt.zero_grad()
            loss.backward()
            opt.step()


@pytest.mark.parametrize("arch,classifier", [("mask", "linear"), ("cascade", "cosine")])
def test_stage2_from_stage1_checkpoint_predicts_the_same(arch, classifier, tmp_path, caplog):
    stage1 = build_model(cfg_for(arch, classifier=classifier))
    train_steps(stage1)  # moves BN statistics and weights away from their init
    DetectionCheckpointer(stage1, str(tmp_path)).save("stage1")
    stage2 = build_model(cfg_for(arch, stage2=True, classifier=classifier))
    freeze_for_calibration(stage2)
    with caplog.at_level(logging.INFO, logger="disalign_det"):
        DisAlignCheckpointer(stage2).load(str(tmp_path / "stage1.pth"))
    assert "start at the identity" in caplog.text
    stage1.eval()
    stage2.eval()
    images = [{"image": d["image"]} for d in batch(2)]
    with torch.no_grad():
        out1, out2 = stage1(images), stage2(images)
    for a, b in zip(out1, out2):
        a, b = a["instances"], b["instances"]
        assert len(a) > 0
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.equal(a.scores, b.scores) and torch.equal(a.pred_classes, b.pred_classes)


def test_checkpoint_with_other_class_count_is_an_error(tmp_path):
    stage1 = build_model(cfg_for("mask", num_classes=K))
    DetectionCheckpointer(stage1, str(tmp_path)).save("stage1")
    stage2 = build_model(cfg_for("mask", stage2=True, num_classes=K + 2))
    with pytest.raises(
        ValueError, match=r"cls_score.weight has shape \(7, 128\) in the checkpoint but \(9, 128\)"
    ):
        DisAlignCheckpointer(stage2).load(str(tmp_path / "stage1.pth"))


def test_checkpoint_of_other_classifier_type_is_an_error(tmp_path):
    stage1 = build_model(cfg_for("mask", classifier="linear"))
    DetectionCheckpointer(stage1, str(tmp_path)).save("stage1")
    stage2 = build_model(cfg_for("mask", stage2=True, classifier="cosine"))
    with pytest.raises(ValueError) as e:
        DisAlignCheckpointer(stage2).load(str(tmp_path / "stage1.pth"))
    assert str(e.value) == (
        f"{tmp_path / 'stage1.pth'} (DisAlignCheckpointer.load): the checkpoint has a linear "
        "classifier (cls_score.weight/bias) while the config asks MODEL.DISALIGN.CLASSIFIER "
        '"cosine"; the zoo models are linear; use the linear stage-2 config, or train a cosine '
        "stage 1 with our *_cos.yaml first."
    )
    # and the reverse
    stage1 = build_model(cfg_for("mask", classifier="cosine"))
    DetectionCheckpointer(stage1, str(tmp_path)).save("stage1_cos")
    with pytest.raises(ValueError, match=r'cosine classifier .*CLASSIFIER "linear"'):
        DisAlignCheckpointer(build_model(cfg_for("mask", stage2=True))).load(
            str(tmp_path / "stage1_cos.pth")
        )


def test_backbone_only_checkpoint_still_loads(tmp_path):
    """An ImageNet-style checkpoint without a box predictor is not a mismatch."""
    stage1 = build_model(cfg_for("mask"))
    backbone_only = {k: v for k, v in stage1.state_dict().items() if k.startswith("backbone.")}
    torch.save({"model": backbone_only}, str(tmp_path / "backbone.pth"))
    DisAlignCheckpointer(build_model(cfg_for("mask"))).load(str(tmp_path / "backbone.pth"))

"""DisAlignFastRCNNOutputLayers built from plain arguments on tiny inputs."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from disalign_det import DisAlignFastRCNNOutputLayers

K, C = 5, 8


def make(**kwargs):
    args = dict(
        input_shape=ShapeSpec(channels=C),
        box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
        num_classes=K,
        test_score_thresh=0.0,
    )
    args.update(kwargs)
    return DisAlignFastRCNNOutputLayers(**args)


def proposals(gt_classes):
    """One 10x10 image whose proposals/ground truth are the same two boxes, repeated."""
    n = len(gt_classes)
    inst = Instances((10, 10))
    boxes = torch.tensor([[1.0, 1.0, 5.0, 5.0], [2.0, 3.0, 9.0, 8.0]]).repeat((n + 1) // 2, 1)[:n]
    inst.proposal_boxes = Boxes(boxes)
    inst.gt_boxes = Boxes(boxes + 0.5)
    inst.gt_classes = torch.tensor(gt_classes, dtype=torch.long)
    return [inst]


def randomize_calibration(p):
    with torch.no_grad():
        p.calibration.alpha.uniform_(-0.5, 0.5)
        p.calibration.beta.uniform_(-1.0, 1.0)
        p.calibration.confidence_weight.normal_()


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
@pytest.mark.parametrize("agnostic", [False, True])
def test_output_shapes(classifier, agnostic):
    p = make(classifier=classifier, calibration=True, cls_agnostic_bbox_reg=agnostic)
    scores, deltas = p(torch.randn(6, C, 1, 1))  # (R, C, ...) is flattened as the parent
    assert scores.shape == (6, K + 1)
    assert deltas.shape == (6, 4 if agnostic else 4 * K)


def test_defaults_are_the_parent():
    """With default arguments the predictor computes what FastRCNNOutputLayers computes."""
    p = make()
    parent = FastRCNNOutputLayers(
        ShapeSpec(channels=C), box2box_transform=p.box2box_transform, num_classes=K
    )
    parent.load_state_dict(p.state_dict())
    x = torch.randn(7, C)
    for a, b in zip(p(x), parent(x)):
        assert torch.equal(a, b)
    gt = [0, 3, K, 1, K, 2, 4]
    with EventStorage():
        ours, theirs = p.losses(p(x), proposals(gt)), parent.losses(parent(x), proposals(gt))
    assert torch.allclose(ours["loss_cls"], theirs["loss_cls"])


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
def test_identity_at_start(classifier):
    plain = make(classifier=classifier)
    calibrated = make(classifier=classifier, calibration=True)
    missing = calibrated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("calibration.") for k in missing)
    x = torch.randn(9, C)
    assert torch.equal(calibrated(x)[0], plain(x)[0])


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
def test_background_untouched_and_formula(classifier):
    p = make(classifier=classifier, calibration=True)
    randomize_calibration(p)
    x = torch.randn(9, C)
    scores, _ = p(x)
    z = p.class_logits(x)
    # background (last) logit bitwise equal to the uncalibrated one
    assert torch.equal(scores[:, K], z[:, K])
    cal = p.calibration
    sigma = torch.sigmoid(x @ cal.confidence_weight + cal.confidence_bias).unsqueeze(1)
    expected = (1 + sigma * cal.alpha) * z[:, :K] + sigma * cal.beta
    assert torch.allclose(scores[:, :K], expected, atol=1e-6)
    assert not torch.allclose(scores[:, :K], z[:, :K])


def test_cosine_classifier():
    p = make(classifier="cosine", cosine_scale=7.0)
    assert isinstance(p.cls_scale, torch.nn.Parameter) and p.cls_scale.item() == 7.0
    assert p.cls_score.bias is None
    x = torch.randn(9, C) * 100  # cosine logits do not grow with the feature norm
    z = p.class_logits(x)
    assert z.abs().max() <= 7.0 + 1e-4
    assert torch.allclose(p.class_logits(x * 3), z, atol=1e-5)


@pytest.mark.parametrize("reduction_check", ["weighted", "uniform"])
def test_loss_matches_weighted_cross_entropy(reduction_check):
    w = torch.tensor([0.2, 0.5, 1.0, 1.3, 2.0]) if reduction_check == "weighted" else torch.ones(K)
    p = make(calibration=True, class_weights=w)
    randomize_calibration(p)
    x = torch.randn(8, C)
    gt = [0, 1, 2, 3, 4, K, K, 2]
    preds = p(x)
    with EventStorage():
        loss = p.losses(preds, proposals(gt))["loss_cls"]
    ref = F.cross_entropy(preds[0], torch.tensor(gt), weight=torch.cat([w, torch.ones(1)]))
    assert torch.allclose(loss, ref, atol=1e-6)
    if reduction_check == "weighted":  # the weights make a difference
        assert not torch.allclose(loss, F.cross_entropy(preds[0], torch.tensor(gt)))


@pytest.mark.parametrize("reweight", [False, True])
def test_no_proposals_zero_loss_with_gradients(reweight):
    p = make(
        classifier="cosine", calibration=True, class_weights=torch.ones(K) if reweight else None
    )
    empty = Instances((10, 10))
    empty.proposal_boxes = Boxes(torch.zeros(0, 4))
    empty.gt_boxes = Boxes(torch.zeros(0, 4))
    empty.gt_classes = torch.zeros(0, dtype=torch.long)
    with EventStorage():
        for props in ([empty], []):
            losses = p.losses(p(torch.randn(0, C)), props)
            total = sum(losses.values())
            assert total.item() == 0.0
            p.zero_grad()
            total.backward()
            assert p.calibration.beta.grad is not None
            assert torch.count_nonzero(p.calibration.beta.grad) == 0


def test_inference_and_predict_probs_are_calibrated():
    p = make(calibration=True)
    randomize_calibration(p)
    x = torch.randn(6, C)
    preds = p(x)
    props = proposals([0] * 6)
    probs = p.predict_probs(preds, props)[0]
    assert torch.allclose(probs, F.softmax(preds[0], dim=-1))
    assert torch.allclose(probs.sum(1), torch.ones(6))
    # ... and differ from the uncalibrated classifier's
    assert not torch.allclose(probs, F.softmax(p.class_logits(x), dim=-1), atol=1e-3)
    instances, kept = p.inference(preds, props)
    assert len(instances) == 1 and len(instances[0]) > 0
    # every kept score is the calibrated probability of its box and class
    for score, cls, idx in zip(instances[0].scores, instances[0].pred_classes, kept[0]):
        assert torch.isclose(score, probs[idx, cls])


def test_bad_arguments():
    with pytest.raises(ValueError, match="classifier must be one of"):
        make(classifier="mlp")
    with pytest.raises(ValueError, match="confidence must be one of"):
        make(calibration=True, confidence="sometimes")
    with pytest.raises(ValueError, match="class_weights has 3 entries but .* 5 foreground"):
        make(class_weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="use_sigmoid_ce"):
        make(class_weights=torch.ones(K), use_sigmoid_ce=True)

"""GRWCrossEntropyLoss against torch's weighted cross-entropy, its class-count sources, and
bad input."""

import json

import pytest
import torch
import torch.nn.functional as F
from cls_testing import CHANNELS, COUNTS, LINEAR_HEAD, NUM_CLASSES, disalign_head_cfg
from mmpretrain.registry import MODELS

from disalign_cls import load_class_counts


def _reference_weights(counts, rho):
    # eq. 11 written out: K (1/r_c)^rho / sum_k (1/r_k)^rho
    inv = torch.tensor([(1.0 / c) ** rho for c in counts], dtype=torch.float64)
    return (len(counts) * inv / inv.sum()).float()


@pytest.mark.parametrize("rho", [0.0, 1.2, 1.5])
def test_loss_equals_torch_weighted_cross_entropy(rho):
    loss = MODELS.build(dict(type="GRWCrossEntropyLoss", class_frequencies=COUNTS, rho=rho))
    logits = torch.randn(9, NUM_CLASSES, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 4, 3, 0, 0])
    w = _reference_weights(COUNTS, rho)
    expected = F.cross_entropy(logits, labels, weight=w)
    # the head's call: avg_factor is the batch size, torch's weighted mean is kept
    torch.testing.assert_close(loss(logits, labels, avg_factor=9), expected)
    torch.testing.assert_close(
        loss(logits, labels, reduction_override="sum"),
        F.cross_entropy(logits, labels, weight=w, reduction="sum"),
    )
    # soft targets (Mixup / CutMix): torch's weighted soft cross-entropy
    soft = torch.softmax(torch.randn(9, NUM_CLASSES), dim=1)
    torch.testing.assert_close(loss(logits, soft), F.cross_entropy(logits, soft, weight=w))
    # per-sample weights: weighted sum over the sum of (class weight x sample weight)
    s = torch.rand(9)
    per = F.cross_entropy(logits, labels, weight=w, reduction="none") * s
    torch.testing.assert_close(loss(logits, labels, weight=s), per.sum() / (w[labels] * s).sum())


def test_head_loss_uses_grw():
    head = MODELS.build(
        disalign_head_cfg(
            LINEAR_HEAD, loss=dict(type="GRWCrossEntropyLoss", class_frequencies=COUNTS, rho=1.2)
        )
    )
    from mmpretrain.structures import DataSample

    feats = (torch.randn(6, CHANNELS),)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    losses = head.loss(feats, samples)
    expected = F.cross_entropy(head(feats), labels, weight=_reference_weights(COUNTS, 1.2))
    torch.testing.assert_close(losses["loss"], expected)


def test_counts_from_the_training_annotation_list(tmp_path):
    # an ImageNet_LT_train.txt-style list: 'path label' lines, read by MMPretrain's dataset
    lines = [f"train/c{y}/{i}.JPEG {y}" for y, n in enumerate([4, 0, 2, 1]) for i in range(n)]
    (tmp_path / "LT_train.txt").write_text("\n".join(lines) + "\n")
    source = dict(type="CustomDataset", data_root=str(tmp_path), ann_file="LT_train.txt")
    counts, names = load_class_counts(source, num_classes=5)
    assert counts == [4, 0, 2, 1, 0] and names is None
    with pytest.raises(ValueError, match=r"class\(es\) have no training examples.*1, 4"):
        MODELS.build(dict(type="GRWCrossEntropyLoss", class_frequencies=source, num_classes=5))
    # the same list given as a frequency file would parse labels as counts: refused
    with pytest.raises(ValueError, match="looks like an annotation list.*CustomDataset"):
        load_class_counts(str(tmp_path / "LT_train.txt"))


def test_bad_input_names_the_value(tmp_path):
    with pytest.raises(ValueError, match=r"rho \(model.head.loss.rho\) must be >= 0"):
        MODELS.build(dict(type="GRWCrossEntropyLoss", class_frequencies=COUNTS, rho=-0.5))
    path = tmp_path / "freq.json"
    path.write_text(json.dumps({"counts": [5, 4, 3], "names": ["a", "b", "c"]}))
    with pytest.raises(ValueError, match=r"counts for 3 classes but the model has num_classes=5"):
        MODELS.build(
            dict(type="GRWCrossEntropyLoss", class_frequencies=str(path), num_classes=NUM_CLASSES)
        )
    loss = MODELS.build(dict(type="GRWCrossEntropyLoss", class_frequencies=str(path)))
    with pytest.raises(ValueError, match=r"frequencies for 3 classes but got logits of shape"):
        loss(torch.randn(2, NUM_CLASSES), torch.tensor([0, 1]))
    path.write_text(json.dumps({"counts": [5, 0, 3], "names": ["a", "b", "c"]}))
    with pytest.raises(ValueError, match=r"no training examples \(count 0\): b"):
        MODELS.build(dict(type="GRWCrossEntropyLoss", class_frequencies=str(path)))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        MODELS.build(
            dict(type="GRWCrossEntropyLoss", class_frequencies=str(tmp_path / "missing.json"))
        )

"""LongTailAccuracy: overall numbers equal MMPretrain's Accuracy, group numbers equal the
accuracy on the images of the group's classes, and a frequency/dataset mismatch is an error."""

import pytest
import torch
from cls_testing import COUNTS, NUM_CLASSES
from mmpretrain.evaluation import Accuracy
from mmpretrain.registry import METRICS
from mmpretrain.structures import DataSample

# COUNTS = [150, 60, 25, 9, 3]: class 0 many (>100), 1-2 medium (20-100), 3-4 few (<20)
GROUPS = {"many": [0], "medium": [1, 2], "few": [3, 4]}


def _samples(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    scores = torch.softmax(torch.randn(n, NUM_CLASSES, generator=g) * 2, dim=1)
    samples = [
        DataSample().set_gt_label(int(y)).set_pred_score(s).to_dict()
        for y, s in zip(labels, scores)
    ]
    return samples, labels, scores


def _evaluate(metric, samples):
    metric.dataset_meta = dict(classes=[f"c{i}" for i in range(NUM_CLASSES)])
    for i in range(0, len(samples), 32):
        metric.process(None, samples[i : i + 32])
    return metric.evaluate(len(samples))


@pytest.mark.parametrize("topk", [(1,), (1, 3)])
def test_overall_equals_accuracy_and_groups_by_hand(topk):
    samples, labels, scores = _samples()
    ours = _evaluate(
        METRICS.build(dict(type="LongTailAccuracy", class_frequencies=COUNTS, topk=topk)), samples
    )
    theirs = _evaluate(Accuracy(topk=topk), samples)
    for key, value in theirs.items():
        assert ours[key] == value, key
    for group, classes in GROUPS.items():
        in_group = torch.isin(labels, torch.tensor(classes))
        for k in topk:
            hit = (scores.topk(k, dim=1).indices == labels[:, None]).any(1)
            assert ours[f"accuracy/{group}_top{k}"] == pytest.approx(
                100.0 * hit[in_group].float().mean().item(), abs=1e-4
            )


def test_group_without_test_images_is_nan_and_mismatch_is_an_error():
    samples, labels, _ = _samples()
    only_many = [s for s, y in zip(samples, labels) if int(y) == 0]
    out = _evaluate(
        METRICS.build(dict(type="LongTailAccuracy", class_frequencies=COUNTS)), only_many
    )
    assert out["accuracy/many_top1"] == out["accuracy/top1"]
    assert out["accuracy/few_top1"] != out["accuracy/few_top1"]  # NaN
    metric = METRICS.build(dict(type="LongTailAccuracy", class_frequencies=COUNTS[:4]))
    with pytest.raises(ValueError, match="frequencies for 4 classes but the dataset has 5"):
        metric.dataset_meta = dict(classes=[f"c{i}" for i in range(NUM_CLASSES)])

import math

import numpy as np
import pytest
import torch
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS

K = 6
# shares: 0.5, 0.3, 0.19, 0.005, 0.004, 0.001 -> head, head, head, body, body, tail
COUNTS = [5000, 3000, 1900, 50, 40, 10]


def _samples(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        gt = torch.randint(0, K, (1, 12, 12), generator=g)
        pred = torch.where(
            torch.rand(1, 12, 12, generator=g) < 0.7,
            gt,
            torch.randint(0, K, (1, 12, 12), generator=g),
        )
        gt[0, 0, :3] = 255
        out.append(dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt)))
    return out


def _run(metric, samples):
    metric.dataset_meta = dict(classes=[f"c{i}" for i in range(K)])
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_overall_equals_iou_metric_and_groups_by_hand():
    samples = _samples()
    lt = _run(METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=COUNTS)), samples)
    ref = _run(IoUMetric(iou_metrics=["mIoU"]), samples)
    for key in ("aAcc", "mIoU", "mAcc"):
        assert lt[key] == ref[key]

    # per-class IoU and Acc by hand from the label maps
    inter, union, label_area = np.zeros(K), np.zeros(K), np.zeros(K)
    for s in samples:
        p, g = s["pred_sem_seg"]["data"].flatten(), s["gt_sem_seg"]["data"].flatten()
        p, g = p[g != 255].numpy(), g[g != 255].numpy()
        for c in range(K):
            inter[c] += np.sum((p == c) & (g == c))
            union[c] += np.sum((p == c) | (g == c))
            label_area[c] += np.sum(g == c)
    iou, acc = inter / union, inter / label_area
    groups = dict(head=[0, 1, 2], body=[3, 4], tail=[5])
    for name, idx in groups.items():
        assert lt[f"{name}_mIoU"] == pytest.approx(round(iou[idx].mean() * 100, 2), abs=1e-6)
        assert lt[f"{name}_mAcc"] == pytest.approx(round(acc[idx].mean() * 100, 2), abs=1e-6)
    assert lt["mIoU"] == pytest.approx(round(iou.mean() * 100, 2), abs=1e-6)


def test_custom_thresholds_and_absent_classes():
    samples = _samples(seed=3)
    for s in samples:  # class 5 never appears: its IoU is NaN and is skipped like IoUMetric
        s["gt_sem_seg"]["data"][s["gt_sem_seg"]["data"] == 5] = 0
        s["pred_sem_seg"]["data"][s["pred_sem_seg"]["data"] == 5] = 0
    lt = _run(
        METRICS.build(
            dict(
                type="LongTailIoUMetric",
                class_frequencies=COUNTS,
                thresholds=(0.2,),
                group_names=("many", "few"),
            )
        ),
        samples,
    )
    assert set(k for k in lt if k.startswith(("many", "few"))) == {
        "many_mIoU",
        "many_mAcc",
        "few_mIoU",
        "few_mAcc",
    }
    assert not math.isnan(lt["few_mIoU"])


def test_class_count_mismatch_is_an_error():
    metric = METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=COUNTS[:5]))
    with pytest.raises(ValueError, match="frequencies for 5 classes but the dataset has 6"):
        _run(metric, _samples())


def test_missing_frequency_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=str(tmp_path / "nope.json")))

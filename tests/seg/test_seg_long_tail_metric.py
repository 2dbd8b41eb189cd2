import builtins
import math
import os

import numpy as np
import pytest
import torch
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS, MODELS

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
    # by hand: "few" (share <= 0.2) is classes 2-5; class 5 is absent (NaN IoU) and skipped
    iou = _per_class_iou(samples)
    assert math.isnan(iou[5])
    assert lt["few_mIoU"] == round(float(np.mean(iou[[2, 3, 4]])) * 100, 2)
    assert lt["many_mIoU"] == round(float(np.mean(iou[[0, 1]])) * 100, 2)


def _per_class_iou(samples):
    inter, union = np.zeros(K), np.zeros(K)
    for s in samples:
        gt, pred = s["gt_sem_seg"]["data"].numpy(), s["pred_sem_seg"]["data"].numpy()
        keep = gt != 255
        for c in range(K):
            g, p = (gt == c) & keep, (pred == c) & keep
            inter[c] += (g & p).sum()
            union[c] += (g | p).sum()
    with np.errstate(invalid="ignore"):
        return inter / union


def test_ade20k_object_info_gives_the_supplement_table7_groups(tmp_path):
    """objectInfo150.txt ratios are shares of all pixels: the paper's 20 / 55 / 75 split."""
    rows = [
        line.rstrip("\n").split("\t")
        for line in open(
            os.path.join(os.path.dirname(__file__), "data", "ade20k_supplement_table7.tsv")
        )
        if not line.startswith("#")
    ]
    assert len(rows) == 150
    info = tmp_path / "objectInfo150.txt"
    info.write_text(
        "Idx\tRatio\tTrain\tVal\tName\n"
        + "".join(f"{i + 1}\t{ratio}\t100\t10\t{name}\n" for i, (name, ratio, _) in enumerate(rows))
    )
    metric = METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=str(info)))
    assert metric.class_groups == [group.lower() for _, _, group in rows]
    assert [metric.class_groups.count(g) for g in ("head", "body", "tail")] == [20, 55, 75]


def test_wrong_class_count_fails_when_the_runner_sets_dataset_meta():
    metric = METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=COUNTS))
    with pytest.raises(ValueError, match="frequencies for 6 classes but the dataset has 150"):
        metric.dataset_meta = dict(classes=[f"c{i}" for i in range(150)])


def test_class_count_mismatch_is_an_error():
    metric = METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=COUNTS[:5]))
    with pytest.raises(ValueError, match="frequencies for 5 classes but the dataset has 6"):
        _run(metric, _samples())


def test_missing_frequency_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=str(tmp_path / "nope.json")))


def test_metric_and_loss_read_the_frequency_file_once_each(tmp_path, monkeypatch):
    """One read per component: counts, names and share total come from the same open."""
    info = tmp_path / "objectInfo150.txt"
    info.write_text(
        "Idx\tRatio\tTrain\tVal\tName\n"
        + "".join(f"{i + 1}\t{share}\t1\t1\tc{i}\n" for i, share in enumerate(COUNTS))
    )
    opened = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(info):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    metric = METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=str(info)))
    assert len(opened) == 1
    # objectInfo150.txt ratios are shares of 1.0, not of their sum (here 9999.0)
    assert metric.class_groups == ["head"] * 6
    MODELS.build(dict(type="GRWCrossEntropyLoss", class_frequencies=str(info)))
    assert len(opened) == 2

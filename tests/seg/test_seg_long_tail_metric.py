import builtins
import json
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


def _iou_metric_table(monkeypatch, samples):
    """IoUMetric's own per-class table (what it prints), as {column: [values per class]}."""
    import mmseg.evaluation.metrics.iou_metric as iou_module

    printed = []
    monkeypatch.setattr(iou_module, "print_log", lambda msg, logger=None: printed.append(msg))
    _run(IoUMetric(iou_metrics=["mIoU", "mDice"]), samples)
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in printed[-1].strip().splitlines()
        if line.startswith("|")
    ]
    header, body = rows[0], rows[1:]
    return {h: [row[i] for row in body] for i, h in enumerate(header)}


def test_per_class_values_are_iou_metrics_table_and_by_hand(monkeypatch):
    samples = _samples(seed=1)
    for s in samples:  # class 5 absent: NaN, as in IoUMetric's table
        s["gt_sem_seg"]["data"][s["gt_sem_seg"]["data"] == 5] = 0
        s["pred_sem_seg"]["data"][s["pred_sem_seg"]["data"] == 5] = 0
    plain = _run(METRICS.build(dict(type="LongTailIoUMetric", class_frequencies=COUNTS)), samples)
    assert not any("per_class" in k for k in plain)  # off by default: the keys are unchanged
    ours = _run(
        METRICS.build(
            dict(
                type="LongTailIoUMetric",
                class_frequencies=COUNTS,
                iou_metrics=["mIoU", "mDice"],
                per_class=True,
            )
        ),
        samples,
    )
    assert {k: v for k, v in ours.items() if not k.startswith("per_class/")} == pytest.approx(
        dict(plain, mDice=ours["mDice"]), nan_ok=True
    )
    table = _iou_metric_table(monkeypatch, samples)
    assert table["Class"] == [f"c{i}" for i in range(K)]
    for metric in ("IoU", "Acc", "Dice"):
        for i, shown in enumerate(table[metric]):
            value = ours[f"per_class/{metric}/c{i}"]
            assert (math.isnan(value) and shown == "nan") or value == float(shown), (metric, i)
    iou = _per_class_iou(samples)
    for i in range(K - 1):
        assert ours[f"per_class/IoU/c{i}"] == round(iou[i] * 100, 2)
    assert math.isnan(ours["per_class/IoU/c5"])


def _load_compare_results():
    """The command line tool, tools/compare_results.py."""
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(repo, "tools"))
    import compare_results

    return compare_results


def _test_log(work_dir, metrics):
    """What mmseg's tools/test.py leaves: <work_dir>/<timestamp>/<timestamp>.json."""
    from mmengine.fileio import dump

    log = work_dir / "20240101_000000" / "20240101_000000.json"
    log.parent.mkdir(parents=True)
    dump(dict({k: float(v) for k, v in metrics.items()}, data_time=0.01, time=0.02), str(log))
    return str(work_dir)


def test_compare_tool_on_the_metrics_test_logs(tmp_path, capsys):
    compare_results = _load_compare_results()
    cfg = dict(type="LongTailIoUMetric", class_frequencies=COUNTS, per_class=True)
    stage1 = _run(METRICS.build(cfg), _samples(seed=4))
    stage2 = _run(METRICS.build(cfg), _samples(seed=5))
    s1, s2 = _test_log(tmp_path / "s1", stage1), _test_log(tmp_path / "s2", stage2)
    freq = tmp_path / "pixels.json"
    freq.write_text(json.dumps({"counts": COUNTS, "names": [f"c{i}" for i in range(K)]}))
    png, out = tmp_path / "per_class.png", tmp_path / "per_class.json"
    argv = ["--framework", "seg", "--stage1", s1, "--stage2", s2, "--frequencies", str(freq)]
    assert compare_results.main(argv + ["--plot", str(png), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    change = stage2["tail_mIoU"] - stage1["tail_mIoU"]
    assert f"tail_mIoU {stage1['tail_mIoU']:8.2f} {stage2['tail_mIoU']:8.2f} {change:+8.2f}" in (
        printed
    )
    data = json.loads(out.read_text())
    rows = data["per_class"]["IoU"]
    assert [r["group"] for r in rows] == ["head"] * 3 + ["body"] * 2 + ["tail"]
    assert [r["x"] for r in rows] == pytest.approx([100 * c / sum(COUNTS) for c in COUNTS])
    for i, r in enumerate(rows):
        key = f"per_class/IoU/c{i}"
        assert r["change"] == pytest.approx(stage2[key] - stage1[key])
    assert set(data["per_class"]) == {"IoU", "Acc"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # frequencies of other classes, or of another class count, are refused
    freq.write_text(json.dumps({"counts": COUNTS, "names": [f"d{i}" for i in range(K)]}))
    assert compare_results.main(argv) == 2
    assert "names differ" in capsys.readouterr().err
    freq.write_text(json.dumps(COUNTS[:5]))
    assert compare_results.main(argv) == 2
    assert "frequencies for 5 classes but the evaluation output has 6" in capsys.readouterr().err

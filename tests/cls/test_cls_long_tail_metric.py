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


@pytest.mark.parametrize("topk", [(1,), (1, 3)])
def test_per_class_accuracy_by_hand_and_off_by_default(topk):
    samples, labels, scores = _samples(n=120, seed=2)
    plain = _evaluate(
        METRICS.build(dict(type="LongTailAccuracy", class_frequencies=COUNTS, topk=topk)), samples
    )
    assert not any("per_class" in k for k in plain)
    ours = _evaluate(
        METRICS.build(
            dict(type="LongTailAccuracy", class_frequencies=COUNTS, topk=topk, per_class=True)
        ),
        samples,
    )
    assert {k: v for k, v in ours.items() if "/per_class/" not in k} == plain
    for k in topk:
        hit = (scores.topk(k, dim=1).indices == labels[:, None]).any(1)
        for c in range(NUM_CLASSES):
            assert ours[f"accuracy/per_class/top{k}/c{c}"] == pytest.approx(
                100.0 * hit[labels == c].float().mean().item(), abs=1e-4
            )


def test_per_class_names_fall_back_and_a_class_without_images_is_nan():
    samples, labels, _ = _samples()
    no_class_4 = [s for s, y in zip(samples, labels) if int(y) != 4]
    metric = METRICS.build(dict(type="LongTailAccuracy", class_frequencies=COUNTS, per_class=True))
    metric.dataset_meta = dict()  # a dataset without class names: the class indices
    metric.process(None, no_class_4)
    out = metric.evaluate(len(no_class_4))
    assert [k for k in out if "/per_class/" in k] == [
        f"accuracy/per_class/top1/{i}" for i in range(NUM_CLASSES)
    ]
    assert out["accuracy/per_class/top1/4"] != out["accuracy/per_class/top1/4"]  # NaN


def test_compare_tool_on_the_metrics_test_logs(tmp_path, capsys):
    import json
    import os
    import sys

    from mmengine.fileio import dump

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(repo, "tools"))
    import compare_results  # the command line tool, tools/compare_results.py

    cfg = dict(type="LongTailAccuracy", class_frequencies=COUNTS, per_class=True)
    stages = []
    for seed, name in ((3, "s1"), (4, "s2")):
        metrics = _evaluate(METRICS.build(cfg), _samples(seed=seed)[0])
        stages.append(metrics)
        # what MMPretrain's tools/test.py leaves: <work_dir>/<timestamp>/<timestamp>.json
        log = tmp_path / name / "20240101_000000" / "20240101_000000.json"
        log.parent.mkdir(parents=True)
        dump(dict(metrics, data_time=0.01, time=0.02), str(log))
    # the training annotation list ('path label' lines) gives the images per class
    ann = tmp_path / "train.txt"
    ann.write_text(
        "".join(f"train/{c}_{i}.png {c}\n" for c, n in enumerate(COUNTS) for i in range(n))
    )
    out = tmp_path / "per_class.json"
    argv = ["--framework", "cls", "--stage1", str(tmp_path / "s1"), "--stage2",
            str(tmp_path / "s2"), "--frequencies", str(ann)]  # fmt: skip
    assert compare_results.main(argv + ["--json", str(out), "--plot", str(tmp_path / "f.png")]) == 0
    printed = capsys.readouterr().out
    a, b = stages[0]["accuracy/few_top1"], stages[1]["accuracy/few_top1"]
    # (the metric column is as wide as the longest name, accuracy/medium_top1)
    assert f"{'accuracy/few_top1':<20} {a:8.2f} {b:8.2f} {b - a:+8.2f}" in printed
    rows = json.loads(out.read_text())["per_class"]["accuracy/top1"]
    assert [r["count"] for r in rows] == COUNTS
    assert [r["group"] for r in rows] == ["many", "medium", "medium", "few", "few"]
    for c, r in enumerate(rows):
        key = f"accuracy/per_class/top1/c{c}"
        assert r["change"] == pytest.approx(stages[1][key] - stages[0][key])
    assert (tmp_path / "f.png").stat().st_size > 10_000
    # an annotation list of another dataset (labels beyond the 5 classes)
    ann.write_text("train/a.png 0\ntrain/b.png 7\n")
    assert compare_results.main(argv) == 2
    assert "labels run from 0 to 7, outside the 5 classes" in capsys.readouterr().err

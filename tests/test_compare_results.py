"""tools/compare_results.py on small real inputs: a hand-made LVIS val json and two prediction
files run through the lvis package's LVISEval (per-class AP known by construction), the
expected-results table, and the errors on bad input. The seg and cls halves (metrics json
written by the long-tail metrics) are tested in tests/seg and tests/cls."""

import json
import math
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import compare_results  # noqa: E402  the command line tool, tools/compare_results.py

# Categories 1..6: two rare, two common, two frequent (training images per category).
IMAGE_COUNTS = [3, 8, 30, 80, 200, 500]
FREQ = ["r", "r", "c", "c", "f", "f"]
GT_BOX = [8.0, 8.0, 40.0, 40.0]  # x, y, w, h: one object of category i on image i


def _box(iou):
    """A box of GT_BOX's size shifted right so that its IoU with GT_BOX is ``iou`` (0: apart)."""
    if iou == 0:
        return [50.0, 50.0, 10.0, 10.0]
    # overlap (40 - d) * 40 over union (40 + d) * 40
    d = 40.0 * (1 - iou) / (1 + iou)
    return [8.0 + d, 8.0, 40.0, 40.0]


def _ap(iou):
    """AP (%) of one detection at this IoU with the only ground truth: the share of LVIS's
    IoU thresholds 0.50, 0.55, ..., 0.95 it passes."""
    return 100.0 * sum(iou >= 0.5 + 0.05 * t - 1e-9 for t in range(10)) / 10


def _write_lvis(tmp_path, image_counts=IMAGE_COUNTS, name="val.json"):
    k = len(image_counts)
    cats = [
        dict(id=i + 1, name=f"c{i}", synset=f"c{i}.n.01", synonyms=[f"c{i}"],
             frequency=FREQ[i], image_count=image_counts[i], instance_count=image_counts[i])
        for i in range(k)
    ]  # fmt: skip
    x, y, w, h = GT_BOX
    polygon = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    images = [
        dict(id=i + 1, width=64, height=64, file_name=f"{i}.jpg",
             neg_category_ids=[j + 1 for j in range(k) if j != i], not_exhaustive_category_ids=[])
        for i in range(k)
    ]  # fmt: skip
    anns = [
        dict(id=i + 1, image_id=i + 1, category_id=i + 1, bbox=GT_BOX, area=w * h,
             segmentation=polygon)
        for i in range(k)
    ]  # fmt: skip
    path = tmp_path / name
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return str(path)


def _write_predictions(out_dir, ious, masks=False):
    """LVISEvaluator's file in OUTPUT_DIR/inference: one detection of category i on image i."""
    preds = []
    for i, iou in enumerate(ious):
        p = dict(image_id=i + 1, category_id=i + 1, bbox=_box(iou), score=0.9)
        if masks:
            import numpy as np
            import pycocotools.mask as mask_utils

            m = np.zeros((64, 64), dtype=np.uint8, order="F")
            bx, by, bw, bh = (int(round(v)) for v in p["bbox"])
            m[by : by + bh, bx : bx + bw] = 1
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode()
            p["segmentation"] = rle
        preds.append(p)
    os.makedirs(out_dir / "inference", exist_ok=True)
    (out_dir / "inference" / "lvis_instances_results.json").write_text(json.dumps(preds))
    return str(out_dir)


# stage 1 finds the frequent classes, stage 2 also the rare and common ones
STAGE1_IOUS = [0.0, 0.6, 0.0, 0.72, 1.0, 1.0]
STAGE2_IOUS = [0.82, 0.91, 0.62, 1.0, 1.0, 0.78]


def test_det_per_class_ap_from_lvis_eval_table_plot_and_json(tmp_path, capsys):
    gt = _write_lvis(tmp_path)
    s1 = _write_predictions(tmp_path / "stage1", STAGE1_IOUS)
    s2 = _write_predictions(tmp_path / "stage2", STAGE2_IOUS)
    png, out = tmp_path / "fig" / "per_class.png", tmp_path / "per_class.json"
    rc = compare_results.main(
        ["--framework", "det", "--stage1", s1, "--stage2", s2, "--gt", gt, "--plot", str(png),
         "--json", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out.read_text())
    rows = data["per_class"]["bbox/AP"]
    assert [r["name"] for r in rows] == [f"c{i}" for i in range(6)]
    assert [r["count"] for r in rows] == IMAGE_COUNTS
    assert [r["group"] for r in rows] == ["rare"] * 2 + ["common"] * 2 + ["frequent"] * 2
    for r, a, b in zip(rows, STAGE1_IOUS, STAGE2_IOUS):
        assert r["stage1"] == pytest.approx(_ap(a)) and r["stage2"] == pytest.approx(_ap(b))
        assert r["change"] == pytest.approx(_ap(b) - _ap(a))
    # The summary is LVISEval's own: AP is the mean of the per-class APs, APr of the rare ones.
    metrics = {m["metric"]: m for m in data["metrics"]}
    assert set(metrics) == {"bbox/AP", "bbox/APr", "bbox/APc", "bbox/APf"}  # no masks
    ap1, ap2 = [_ap(v) for v in STAGE1_IOUS], [_ap(v) for v in STAGE2_IOUS]
    assert metrics["bbox/AP"]["stage1"] == pytest.approx(sum(ap1) / 6)
    assert metrics["bbox/APr"]["stage2"] == pytest.approx((ap2[0] + ap2[1]) / 2)
    change = metrics["bbox/APr"]["change"]
    assert change == pytest.approx((ap2[0] + ap2[1] - ap1[0] - ap1[1]) / 2)
    # The printed table carries the same numbers, and the per-group summary.
    assert (
        f"bbox/APr {ap1[0] / 2 + ap1[1] / 2:8.2f} {(ap2[0] + ap2[1]) / 2:8.2f} {change:+8.2f}"
        in (printed)
    )
    rare = next(g for g in data["groups"]["bbox/AP"] if g["group"] == "rare")
    assert rare == dict(group="rare", classes=2, valued=2, mean_change=pytest.approx(
        (ap2[0] + ap2[1] - ap1[0] - ap1[1]) / 2), up=2, down=0)  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_det_masks_expected_row_and_training_frequencies(tmp_path, capsys):
    gt = _write_lvis(tmp_path)
    # The training json holds the training image counts; the val json's would be its own.
    train = _write_lvis(tmp_path, [c * 10 for c in IMAGE_COUNTS], name="train.json")
    s1 = _write_predictions(tmp_path / "stage1", STAGE1_IOUS, masks=True)
    s2 = _write_predictions(tmp_path / "stage2", STAGE2_IOUS, masks=True)
    out = tmp_path / "per_class.json"
    row = "LVISv0.5/mask_rcnn_R_50_FPN_1x"
    rc = compare_results.main(
        ["--framework", "det", "--stage1", s1 + "/inference/lvis_instances_results.json",
         "--stage2", s2, "--gt", gt, "--frequencies", train, "--expected", row, "--json", str(out)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["per_class"]) == {"bbox/AP", "segm/AP"}
    segm = data["per_class"]["segm/AP"]
    assert segm[4]["stage1"] == pytest.approx(100.0)  # the exact mask
    assert [r["count"] for r in segm] == [c * 10 for c in IMAGE_COUNTS]
    # x 10, the rare categories are common and the common ones frequent: the warning says the
    # groups differ from the json's 'frequency' letters (which APr/APc/APf use).
    assert "put 4 of 6 categories in another group" in captured.err
    expected = json.load(open(os.path.join(REPO, "tools", "expected_results.json")))["rows"][row]
    m = {r["metric"]: r for r in data["metrics"]}["segm/APr"]
    assert m["expected_stage1"] == expected["stage1"]["segm/APr"] == 3.7
    assert m["stage2_vs_expected"] == pytest.approx(m["stage2"] - expected["stage2"]["segm/APr"])
    assert m["expected_change"] == pytest.approx(
        expected["stage2"]["segm/APr"] - expected["stage1"]["segm/APr"]
    )
    assert expected["source"] in captured.out
    line = next(ln for ln in captured.out.splitlines() if ln.startswith("segm/APr "))
    assert f"| {3.7:8.2f} {8.5:8.2f} {4.8:+8.2f} | {m['stage1'] - 3.7:+8.2f}" in line


def test_expected_rows_have_sources_configs_and_known_keys():
    with open(os.path.join(REPO, "tools", "expected_results.json")) as f:
        rows = json.load(f)["rows"]
    keys = {
        "det": {f"{t}/{m}" for t in ("bbox", "segm") for m in ("AP", "APr", "APc", "APf")},
        "seg": {f"{g}m{k}" for g in ("", "head_", "body_", "tail_") for k in ("IoU", "Acc")},
        "cls": {f"accuracy/{g}top1" for g in ("", "many_", "medium_", "few_")},
    }
    assert len(rows) >= 20
    for name, row in rows.items():
        assert row["source"] and row["framework"] in keys, name
        assert all(os.path.exists(os.path.join(REPO, c)) for c in row["configs"]), name
        assert set(row["stage1"]) == set(row["stage2"]) <= keys[row["framework"]], name
    # Spot checks against the paper: supplement Table 8, main Table 6, supplement Table 1.
    assert rows["LVISv0.5/mask_rcnn_R_50_FPN_1x"]["stage2"]["bbox/APr"] == 7.5
    assert rows["ade20k/fcn_r50-d8:ms-flip"]["stage1"]["mIoU"] == 38.1
    assert rows["imagenet-lt/resnext50-32x4d-cos"]["stage2"]["accuracy/few_top1"] == 31.4


def _error(capsys, argv):
    assert compare_results.main(argv) == 2
    return capsys.readouterr().err


def test_det_bad_input_is_a_clear_error(tmp_path, capsys):
    gt = _write_lvis(tmp_path)
    s1 = _write_predictions(tmp_path / "stage1", STAGE1_IOUS)
    s2 = _write_predictions(tmp_path / "stage2", STAGE2_IOUS)
    det = ["--framework", "det", "--stage1", s1, "--gt", gt]
    assert "--gt is needed" in _error(
        capsys, ["--framework", "det", "--stage1", s1, "--stage2", s2]
    )
    (tmp_path / "empty").mkdir()
    assert "no lvis_instances_results.json under" in _error(
        capsys, det + ["--stage2", str(tmp_path / "empty")]
    )
    assert "holds 2 lvis_instances_results.json files" in _error(
        capsys, det + ["--stage2", str(tmp_path)]
    )
    assert "does not exist" in _error(capsys, det + ["--stage2", str(tmp_path / "nope")])
    # a model of 7 classes against a 6-class json
    bad = tmp_path / "stage7"
    _write_predictions(bad, STAGE2_IOUS)
    preds = json.loads((bad / "inference" / "lvis_instances_results.json").read_text())
    preds.append(dict(image_id=1, category_id=7, bbox=GT_BOX, score=0.5))
    (bad / "inference" / "lvis_instances_results.json").write_text(json.dumps(preds))
    assert "predicts category ids [7]" in _error(capsys, det + ["--stage2", str(bad)])
    # not predictions at all
    (tmp_path / "x.json").write_text(json.dumps({"bbox": {"AP": 1}}))
    assert "not a list of LVIS predictions" in _error(
        capsys, det + ["--stage2", str(tmp_path / "x.json")]
    )
    # training frequencies of another class count
    freq = tmp_path / "freq.json"
    freq.write_text(json.dumps([10, 20, 30]))
    assert "frequencies for 3 classes but the evaluation output has 6" in _error(
        capsys, det + ["--stage2", s2, "--frequencies", str(freq)]
    )
    assert "no expected row 'nope'" in _error(capsys, det + ["--stage2", s2, "--expected", "nope"])
    assert "is a seg row" in _error(
        capsys, det + ["--stage2", s2, "--expected", "ade20k/fcn_r50-d8"]
    )
    # a gt json without the LVIS fields
    coco = tmp_path / "coco.json"
    data = json.loads(open(gt).read())
    for c in data["categories"]:
        del c["frequency"]
    coco.write_text(json.dumps(data))
    assert "needs every category's 'frequency'" in _error(
        capsys, ["--framework", "det", "--stage1", s1, "--stage2", s2, "--gt", str(coco)]
    )


def test_mm_outputs_without_per_class_values_name_the_option(tmp_path, capsys):
    for stage in ("s1", "s2"):
        log = tmp_path / stage / "20240101_000000" / "20240101_000000.json"
        log.parent.mkdir(parents=True)
        log.write_text(json.dumps({"aAcc": 80.0, "mIoU": 40.0, "time": 0.1}) + "\n")
    argv = [
        "--framework",
        "seg",
        "--stage1",
        str(tmp_path / "s1"),
        "--stage2",
        str(tmp_path / "s2"),
    ]
    err = _error(capsys, argv + ["--plot", str(tmp_path / "x.png")])
    assert "no per-class values in" in err and "test_evaluator.per_class=True" in err
    # Without --plot the table alone is printed, with the hint.
    assert compare_results.main(argv) == 0
    out = capsys.readouterr().out
    assert f"mIoU   {40.0:8.2f} {40.0:8.2f} {0.0:+8.2f}" in out and "per_class=True" in out
    assert not any(line.startswith("time") for line in out.splitlines())
    assert "no test metrics under" in _error(
        capsys, ["--framework", "cls", "--stage1", str(tmp_path), "--stage2", str(tmp_path)]
    )


def test_annotation_list_frequencies_and_groups(tmp_path):
    ann = tmp_path / "train.txt"
    labels = [0] * 120 + [1] * 40 + [2] * 5
    ann.write_text("".join(f"train/{i}.jpg {y}\n" for i, y in enumerate(labels)))
    counts, names = compare_results._read_frequency_file(str(ann), 4)
    assert counts == [120, 40, 5, 0] and names is None
    freq = compare_results.count_frequencies("cls", counts, "x")
    assert freq.groups == ["many", "medium", "few", "few"]
    assert [b for b, _ in freq.boundaries] == [19.5, 100.5]
    with pytest.raises(compare_results.InputError, match="labels run from 0 to 2, outside the 2"):
        compare_results._read_frequency_file(str(ann), 2)
    assert math.isnan(compare_results.group_summary([], ["few"])[0]["mean_change"])


def test_per_class_key_format_round_trips():
    from disalign_core.per_class import per_class_keys, per_class_metrics, split_per_class

    names = ["wall", "a/b", "chair", "chair"]
    assert per_class_keys("IoU", names) == [
        "per_class/IoU/wall", "per_class/IoU/a/b", "per_class/IoU/chair #2",
        "per_class/IoU/chair #3",
    ]  # fmt: skip
    logged = {"accuracy/top1": 50.0}
    logged.update({f"accuracy/{k}": v for k, v in per_class_metrics("top1", names, [1, 2, 3, math.nan]).items()})  # fmt: skip
    logged.update(time=0.1, my_per_class_thing=1.0)
    others, per_class = split_per_class(logged)
    assert others == {"accuracy/top1": 50.0, "time": 0.1, "my_per_class_thing": 1.0}
    assert list(per_class) == ["accuracy/top1"]
    values = per_class["accuracy/top1"]
    assert list(values) == ["wall", "a/b", "chair #2", "chair #3"]
    assert list(values.values())[:3] == [1.0, 2.0, 3.0] and math.isnan(values["chair #3"])
    with pytest.raises(ValueError, match="without '/'"):
        per_class_keys("m/IoU", names)

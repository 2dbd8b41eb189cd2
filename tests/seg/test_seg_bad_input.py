"""Bad input found before training starts, each through mmseg's stock tools/train.py, with an
error naming the bad value, the file or config key, and the fix (issue 9)."""

import os
import subprocess
import sys

import pytest
import torch
from mmseg.datasets import ADE20KDataset, BaseSegDataset
from mmseg.registry import MODELS
from seg_testing import FCN_HEAD, MMSEG_TOOLS, REPO, disalign_head_cfg, tiny_segmentor_cfg

from disalign_core import check_class_names, read_class_frequencies, write_class_frequencies
from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic
from disalign_mmengine import CheckpointReadError
from disalign_seg import LongTailIoUMetric
from disalign_seg.data_check_hook import missing_dataset_files

STAGE2 = os.path.join(
    REPO, "configs", "mmseg", "tiny", "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py"
)
OBJECT_INFO = os.path.join(os.path.dirname(__file__), "data", "objectInfo150.txt")
KEY = "model.decode_head.loss_decode.class_frequencies"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad_input") / "data")
    spec = SyntheticLongTailSpec(num_train=6, num_val=2, tail_train_images=1)
    meta = generate_ade20k_synthetic(root, spec, seed=3)
    write_class_frequencies(
        os.path.join(root, "pixel_frequencies.json"),
        [100.0 - i for i in range(14)],
        meta["classes"],
    )
    return root, meta["classes"]


def _train_fails(data_root, work_dir, *options, resume=False):
    """Run tools/train.py on the tiny stage-2 config; it must fail before any iteration."""
    cmd = [sys.executable, os.path.join(MMSEG_TOOLS, "train.py"), STAGE2, "--work-dir", work_dir]
    cmd += ["--resume"] if resume else []
    cmd += ["--cfg-options", *options] if options else []
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO, DISALIGN_SEG_DATA=data_root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Iter(train)" not in out  # found before training started
    return out


def test_frequency_file_of_other_classes_is_refused(data, tmp_path):
    root, classes = data
    other = tmp_path / "other_dataset.json"
    names = list(classes)
    names[3], names[9] = "zebra", "unicorn"
    write_class_frequencies(str(other), [100.0 - i for i in range(14)], names)
    out = _train_fails(root, str(tmp_path / "w"), f"{KEY}={other}")
    assert "are not those of the training dataset" in out
    assert str(other) in out and KEY in out
    assert "class 3: 'zebra' in the file, 'head3' in the data" in out
    assert "2 of 14 names differ" in out and "compute_pixel_frequencies.py" in out


def test_frequency_file_of_another_class_count_is_a_build_time_error(data, tmp_path):
    root, classes = data
    short = tmp_path / "thirteen.json"
    write_class_frequencies(str(short), [10.0] * 13, classes[:13])
    out = _train_fails(root, str(tmp_path / "w"), f"{KEY}={short}")
    assert f"{KEY} ('{short}') has 13 classes but model.decode_head.num_classes is 14" in out
    # The model is built by Runner.__init__: no loop, no checkpoint was touched yet.
    assert "loading the stage-1 checkpoint" not in out


def test_missing_images_and_label_maps_are_listed_before_training(data, tmp_path):
    root, _ = data
    broken = tmp_path / "data"
    subprocess.run(["cp", "-r", root, str(broken)], check=True)
    # A folder-scanning dataset lists the images it finds and derives their label maps.
    for p in ("annotations/training/t00004.png", "annotations/training/t00001.png"):
        (broken / p).unlink()
    out = _train_fails(str(broken), str(tmp_path / "w"))
    ann = broken / "annotations" / "training"
    assert "2 of the 12 files listed by train_dataloader.dataset do not exist" in out
    assert f"'{ann / 't00001.png'}', '{ann / 't00004.png'}'" in out
    assert "data_root and data_prefix" in out


def test_missing_files_of_an_ann_file_list(data, tmp_path):
    # An ann_file-based dataset lists images and label maps: both of a missing entry count.
    root, classes = data
    (tmp_path / "val.txt").write_text("v00000\nv00001\nv00009\n")  # v00009 was never made
    dataset = BaseSegDataset(
        data_root=root,
        ann_file=str(tmp_path / "val.txt"),
        data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
        img_suffix=".jpg",
        seg_map_suffix=".png",
        metainfo=dict(classes=classes),
    )
    listed, missing = missing_dataset_files(dataset)
    assert listed == 6
    assert missing == [
        os.path.join(root, "annotations", "validation", "v00009.png"),
        os.path.join(root, "images", "validation", "v00009.jpg"),
    ]


def test_truncated_checkpoint_on_resume_names_file_and_fix(data, tmp_path):
    root, _ = data
    work = tmp_path / "w"
    work.mkdir()
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"w": torch.ones(1000)}, "meta": {}}, good)
    bad = work / "iter_2.pth"
    bad.write_bytes(good.read_bytes()[:3000])  # a save interrupted half-way
    (work / "last_checkpoint").write_text(str(bad))
    stage1 = tmp_path / "stage1.pth"
    torch.save(_stage1_state(), stage1)
    out = _train_fails(root, str(work), f"model.stage1_checkpoint={stage1}", resume=True)
    assert f"cannot read the checkpoint '{bad}'" in out
    assert "truncated" in out and "last_checkpoint" in out
    assert "Do not retry with weights_only=False" in out


def _stage1_state():
    """A stage-1 checkpoint of the tiny config's plain model, as the runner saves it."""
    from mmengine.config import Config

    cfg = Config.fromfile(
        os.path.join(os.path.dirname(STAGE2), "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
    )
    return {"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {}}


def test_real_ade20k_names_match_mmseg_classes_and_a_shuffle_does_not():
    counts, names = read_class_frequencies(OBJECT_INFO)
    classes = ADE20KDataset.METAINFO["classes"]
    assert len(names) == len(classes) == 150
    # e.g. 'television, television receiver, ...' in the file, 'television receiver' in mmseg
    check_class_names(names, classes, source=OBJECT_INFO, key="k")
    metric = LongTailIoUMetric(class_frequencies=OBJECT_INFO)
    metric.dataset_meta = dict(classes=classes)
    swapped = list(classes)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    with pytest.raises(ValueError, match=r"2 of 150 names differ \(class 1: 'building, edifice'"):
        check_class_names(names, swapped, source=repr(OBJECT_INFO), key="k")
    with pytest.raises(ValueError, match="objectInfo150.txt.*val_evaluator.class_frequencies"):
        metric.dataset_meta = dict(classes=swapped)


def test_head_checks_loss_class_count_when_built():
    head = disalign_head_cfg(
        FCN_HEAD, loss_decode=dict(type="GRWCrossEntropyLoss", class_frequencies=[3, 2, 1])
    )
    with pytest.raises(
        ValueError,
        match=rf"{KEY} \(a list of 3 numbers\) has 3 classes but "
        r"model.decode_head.num_classes is 5",
    ):
        MODELS.build(dict(head, in_channels=8, channels=4))


def test_stage1_checkpoint_missing_or_empty(tmp_path):
    cfg = tiny_segmentor_cfg(disalign_head_cfg(FCN_HEAD), segmentor="DisAlignEncoderDecoder")
    missing = str(tmp_path / "nope.pth")
    model = MODELS.build(dict(cfg, stage1_checkpoint=missing))
    with pytest.raises(
        FileNotFoundError,
        match=rf"checkpoint '{missing}' does not exist.*"
        r"model.stage1_checkpoint.*train the stage that writes it first",
    ):
        model.init_weights()
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    model = MODELS.build(dict(cfg, stage1_checkpoint=str(empty)))
    with pytest.raises(
        CheckpointReadError,
        match=r"empty.pth' \(0 bytes; EOFError.*" r"model.stage1_checkpoint.*Fix: write it again",
    ):
        model.init_weights()


def test_stage1_checkpoint_of_another_class_count_is_refused(tmp_path):
    cfg = tiny_segmentor_cfg(disalign_head_cfg(FCN_HEAD), segmentor="DisAlignEncoderDecoder")
    other = MODELS.build(
        tiny_segmentor_cfg(dict(FCN_HEAD, num_classes=3), segmentor="EncoderDecoder")
    )
    path = tmp_path / "three_classes.pth"
    torch.save({"state_dict": other.state_dict(), "meta": {}}, path)
    model = MODELS.build(dict(cfg, stage1_checkpoint=str(path)))
    with pytest.raises(
        ValueError, match=r"decode_head.conv_seg.weight has 3 classes.*num_classes=5"
    ):
        model.init_weights()

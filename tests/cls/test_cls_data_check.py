"""Annotation lists and images checked before training, through MMPretrain's stock
tools/train.py (DisAlignDataCheckHook of the tiny stage-2 config): a label >= K (torch would stop
at the first batch holding it), a missing image (the loader would stop when it reaches it) and
a cut-short image are listed with the list file, the line, the value, K, the config keys and the
fix; nothing is trained or written."""

import os
import shutil
import subprocess
import sys

import pytest
from cls_testing import MMPRETRAIN_TOOLS, REPO, TINY

from disalign_cls.data_check_hook import DisAlignDataCheckHook, label_range_message
from disalign_demo.cls import generate_cls_synthetic

STAGE2 = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls_data_check") / "data"
    generate_cls_synthetic(str(root), seed=1, test_per_class=3)
    return root


def copy_of(data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data, root)
    return root


def set_label(list_file, line_number, label):
    lines = list_file.read_text().splitlines()
    path, _ = lines[line_number - 1].rsplit(" ", 1)
    lines[line_number - 1] = f"{path} {label}"
    list_file.write_text("\n".join(lines) + "\n")
    return lines[line_number - 1]


def train_fails(data_root, work_dir, *options):
    cmd = [sys.executable, os.path.join(MMPRETRAIN_TOOLS, "train.py"), STAGE2]
    cmd += ["--work-dir", work_dir] + (["--cfg-options", *options] if options else [])
    env = dict(os.environ, PYTHONPATH=REPO, DISALIGN_CLS_DATA=str(data_root), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Iter(train)" not in out and "loading the stage-1 checkpoint" not in out
    written = [f for _, _, files in os.walk(work_dir) for f in files if f.endswith(".pth")]
    assert not written, written
    return out


def test_label_out_of_range_missing_and_cut_short_images(data, tmp_path):
    root = copy_of(data, tmp_path)
    test_list = root / "meta" / "test.txt"
    line5 = set_label(test_list, 5, 16)
    line9 = set_label(test_list, 9, 20)
    (root / "train" / "03_004.png").unlink()
    cut = root / "train" / "05_001.png"
    cut.write_bytes(cut.read_bytes()[:60])

    out = train_fails(root, str(tmp_path / "w"))
    assert "ValueError: the data cannot be used as it is:" in out
    assert (
        f"2 of the 48 images of val_dataloader.dataset.ann_file='{test_list}' have labels that "
        f"are not class ids in [0, 16) (model.head.num_classes=16): {test_list} line 5 "
        f"({line5!r}): label 16; {test_list} line 9 ({line9!r}): label 20. Fix: if the data has "
        "more classes than the model, set model.head.num_classes" in out
    )
    train_list = root / "meta" / "train.txt"
    number = train_list.read_text().splitlines().index("train/03_004.png 3") + 1
    assert (
        f"1 of the 1452 images listed by train_dataloader.dataset (ann_file '{train_list}') do "
        f"not exist: {train_list} line {number} ('train/03_004.png 3'). Fix: check "
        "train_dataloader.dataset.data_root and data_prefix" in out
    )
    assert (
        f"1 of the 1451 images of train_dataloader.dataset checked (check_images='headers', "
        f"sample=2000) cannot be used: '{cut}' is cut short or damaged" in out
    )


def test_training_list_label_found_when_frequencies_come_from_a_file(data, tmp_path):
    """With class counts from a file, no component reads the training list before the hook."""
    root = copy_of(data, tmp_path)
    train_list = root / "meta" / "train.txt"
    line = set_label(train_list, 1000, 16)
    counts = str(root / "meta" / "class_counts.json")
    out = train_fails(
        root,
        str(tmp_path / "w"),
        f"model.head.loss.class_frequencies={counts}",
        f"val_evaluator.class_frequencies={counts}",
    )
    assert (
        f"1 of the 1452 images of train_dataloader.dataset.ann_file='{train_list}' have labels "
        f"that are not class ids in [0, 16) (model.head.num_classes=16): {train_list} line 1000 "
        f"({line!r}): label 16." in out
    )
    assert "val_dataloader" not in out.split("the data cannot be used as it is:")[-1]


def test_one_based_list_gets_that_fix(data):
    from mmpretrain.datasets import CustomDataset

    ann = data / "meta" / "test.txt"
    dataset = CustomDataset(data_root=str(data), ann_file=str(ann), with_label=True)
    plain = [dataset.get_data_info(i) for i in range(len(dataset))]
    infos = [dict(info, gt_label=info["gt_label"] + 1) for info in plain]
    message = label_range_message(dataset, infos, 16, "val_dataloader.dataset")
    assert message.startswith("3 of the 48 images of val_dataloader.dataset.ann_file=")
    assert "Fix: the list seems to count classes from 1 (labels 1..16): subtract 1" in message
    assert label_range_message(dataset, plain, 16, "k") is None
    with pytest.raises(ValueError, match="sample=0, expected None or >= 1"):
        DisAlignDataCheckHook(sample=0)

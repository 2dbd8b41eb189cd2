"""The contents of the data, checked before training through mmseg's stock tools/train.py
(DisAlignDataCheckHook of the tiny stage-2 config): label values that are neither a class nor
the ignore index (torch would stop at the first batch holding one with 'Target 199 is out of
bounds'), cut-short images and label maps; each error names the file, the values, the class
count, the config keys and the fix, and nothing is trained or written."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from seg_testing import MMSEG_TOOLS, REPO

from disalign_core import write_class_frequencies
from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic
from disalign_seg.data_check_hook import DisAlignDataCheckHook, label_value_problem

STAGE2 = os.path.join(
    REPO, "configs", "mmseg", "tiny", "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_check") / "data"
    spec = SyntheticLongTailSpec(num_train=6, num_val=2, tail_train_images=1)
    meta = generate_ade20k_synthetic(str(root), spec, seed=3)
    write_class_frequencies(
        str(root / "pixel_frequencies.json"), [100.0 - i for i in range(14)], meta["classes"]
    )
    return root


def train_fails(data_root, work_dir, *options):
    cmd = [sys.executable, os.path.join(MMSEG_TOOLS, "train.py"), STAGE2, "--work-dir", work_dir]
    cmd += ["--cfg-options", *options] if options else []
    env = dict(os.environ, PYTHONPATH=REPO, DISALIGN_SEG_DATA=str(data_root), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Iter(train)" not in out  # found before training started
    written = [f for _, _, files in os.walk(work_dir) for f in files if f.endswith(".pth")]
    assert not written, written
    return out


def cut_short(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_out_of_range_labels_and_cut_short_files_are_listed(data, tmp_path):
    broken = tmp_path / "data"
    subprocess.run(["cp", "-r", str(data), str(broken)], check=True)
    train_ann = broken / "annotations" / "training"
    labels = np.array(Image.open(train_ann / "t00002.png"))
    labels[:4, :4], labels[4:8, :4] = 199, 200  # neither 0..14 nor 255
    Image.fromarray(labels).save(train_ann / "t00002.png")
    cut_short(broken / "images" / "training" / "t00003.jpg")
    cut_short(broken / "annotations" / "validation" / "v00001.png")

    out = train_fails(broken, str(tmp_path / "w"))
    assert "ValueError: the data cannot be trained on as it is:" in out
    assert (
        f"1 of the 6 label maps listed by train_dataloader.dataset hold values that are neither "
        f"a class id nor the ignore index: '{train_ann / 't00002.png'}': 199, 200." in out
    )
    assert (
        "model.decode_head.num_classes=14 classes (ids 0..13) and ignores "
        "model.decode_head.ignore_index=255; with train_dataloader.dataset.reduce_zero_label=True "
        "the files may hold 0..14 (0 and 255 are ignored, v is class v-1)" in out
    )
    assert "set model.decode_head.num_classes (and model.auxiliary_head.num_classes)" in out
    assert (
        f"1 of the 6 images listed by train_dataloader.dataset cannot be used (check_images="
        f"'headers': format and size read, a JPEG/PNG must end as a complete file): "
        f"'{broken / 'images' / 'training' / 't00003.jpg'}' is cut short or damaged" in out
    )
    assert (
        f"1 of the 2 label maps listed by val_dataloader.dataset cannot be used (every label map "
        f"decoded): '{broken / 'annotations' / 'validation' / 'v00001.png'}' cannot be decoded "
        "(OSError: image file is truncated)" in out
    )


def test_one_based_maps_without_reduce_zero_label_get_that_fix(data, tmp_path):
    # The built-in maps are ADE20K's convention (0 unlabelled, class c stored as c+1).
    out = train_fails(data, str(tmp_path / "w"), "train_dataloader.dataset.reduce_zero_label=False")
    assert "hold values that are neither a class id nor the ignore index" in out
    assert "with train_dataloader.dataset.reduce_zero_label=False the files may hold 0..13 or 255" in out  # fmt: skip
    assert (
        "Fix: the maps seem to count classes from 1 (values up to 14, 0 for 'unlabelled', as "
        "ADE20K's): set train_dataloader.dataset.reduce_zero_label=True" in out
    )
    assert "val_dataloader.dataset" not in out.split("the data cannot be trained on")[-1]


def test_label_values_as_mmseg_reads_them():
    # plain: ids 0..K-1 and the ignore index
    assert label_value_problem([0, 4, 255], 5, 255) == []
    assert label_value_problem([0, 5, 199, 255], 5, 255) == [5, 199]
    # reduce_zero_label: file 0 and 255 ignored, v -> v-1
    assert label_value_problem([0, 1, 5, 255], 5, 255, reduce_zero_label=True) == []
    assert label_value_problem([6, 254], 5, 255, reduce_zero_label=True) == [6, 254]
    # label_map (custom classes): old id -> new id, unmapped old ids to 255
    assert label_value_problem([0, 7], 2, 255, label_map={7: 1, 3: 255}) == []
    assert label_value_problem([3], 2, 255, label_map={7: 1, 3: 255}) == []
    # 16-bit maps: values above 255 would wrap in mmseg's 8-bit read
    assert label_value_problem([1, 257], 5, 255) == [257]
    with pytest.raises(ValueError, match="check_images='fast'"):
        DisAlignDataCheckHook(check_images="fast")

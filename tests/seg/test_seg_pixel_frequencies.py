import json
import os

import numpy as np
import pytest
from PIL import Image
from seg_testing import REPO, run_tool

from disalign_core import groups_by_share, read_class_frequencies
from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic
from disalign_seg import count_class_pixels, dataset_classes_from_config


def _write(folder, maps):
    os.makedirs(folder, exist_ok=True)
    for i, m in enumerate(maps):
        Image.fromarray(np.asarray(m, np.uint8)).save(os.path.join(folder, f"{i}.png"))


def test_counts_with_reduce_zero_label_and_ignore(tmp_path):
    # ADE20K convention: 0 unlabelled, class c stored as c + 1; 255 also ignored.
    _write(tmp_path / "ann", [[[0, 1, 1], [2, 255, 3]], [[3, 3, 3], [0, 0, 1]]])
    counts = count_class_pixels(str(tmp_path / "ann"), 3, reduce_zero_label=True, progress=False)
    assert counts.tolist() == [3, 1, 4]
    plain = count_class_pixels(str(tmp_path / "ann"), 4, progress=False)
    assert plain.tolist() == [3, 3, 1, 4]


def test_bad_labels_and_folders_are_clear_errors(tmp_path):
    _write(tmp_path / "ann", [[[1, 7]]])
    with pytest.raises(ValueError, match=r"0.png: label 6 outside \[0, 3\)"):
        count_class_pixels(str(tmp_path / "ann"), 3, reduce_zero_label=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        count_class_pixels(str(tmp_path / "nowhere"), 3)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no '\\*.png' label maps"):
        count_class_pixels(str(tmp_path / "empty"), 3)


def test_cli_on_synthetic_data_spans_head_body_tail(tmp_path):
    spec = SyntheticLongTailSpec()  # exactly the demo's data (seed 0)
    meta = generate_ade20k_synthetic(str(tmp_path), spec, seed=0)
    out = tmp_path / "freq.json"
    cfg = os.path.join(REPO, "configs/mmseg/tiny/fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
    log = run_tool(
        [
            "tools/compute_pixel_frequencies.py",
            str(tmp_path / "annotations" / "training"),
            "--config",
            cfg,
            "--out",
            str(out),
        ],
        env=dict(DISALIGN_SEG_DATA=str(tmp_path)),
    )
    assert "counting class pixels" in log  # tqdm's progress bar
    data = json.loads(out.read_text())
    assert data["names"] == meta["classes"]
    counts, names = read_class_frequencies(str(out))
    groups = groups_by_share(counts)
    assert groups == ["head"] * 4 + ["body"] * 4 + ["tail"] * 6, list(zip(names, counts))


def test_ade20k_config_gives_150_classes_and_its_datasets_reduce_zero_label():
    """mmseg's ADE20K config leaves reduce_zero_label to ADE20KDataset's default (True)."""
    names, reduce = dataset_classes_from_config(
        os.path.join(REPO, "configs", "mmseg", "fcn_r50-d8_4xb4-160k_ade20k-512x512.py")
    )
    assert len(names) == 150 and names[0] == "wall" and reduce is True

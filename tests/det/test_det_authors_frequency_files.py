"""The DisAlign authors' class-frequency files through MODEL.DISALIGN.FREQUENCY_FILE, written
here in the shapes their code reads (num_shots_v0.5.npy: an array of counts, np.load;
num_shots_v1.0.json: a flat list [id, count, ...], json.load(...)[1::2]): the counts, the GRW
weights their code computes from them, the format in the log, and the error for a file of
another class count."""

import json

import numpy as np
import pytest
import torch
from det_testing import NUM_CLASSES, TRAIN, tiny_cfg
from det_zoo_testing import recording

from disalign_det import class_frequencies_from_config, class_weights_from_config

COUNTS = [400, 150, 101, 90, 40, 12, 11, 9, 5, 3, 2, 1]
assert len(COUNTS) == NUM_CLASSES
KEY = "MODEL.DISALIGN.FREQUENCY_FILE"


def cfg_for(path):
    return tiny_cfg(
        opts=["MODEL.DISALIGN.REWEIGHT", "True", "DATASETS.TRAIN", f"('{TRAIN}',)",
              "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES), KEY, str(path)]
    )  # fmt: skip


def authors_weights(num_shots, rho=0.8):
    """The authors' _init_weights (fast_rcnn.py of their disalign configs), foreground part."""
    num_shots = np.asarray(num_shots, dtype=np.float64)
    ratio = num_shots / np.sum(num_shots)
    w = 1 / (ratio**rho)
    return torch.tensor(w / np.sum(w) * len(num_shots)).float()


def write_v05(path):
    np.save(path, np.asarray(COUNTS, dtype=np.int64))


def write_v1(path):
    path.write_text(json.dumps([x for i, c in enumerate(COUNTS, 1) for x in (i, c)]))


@pytest.mark.parametrize(
    "name, write, fmt",
    [
        ("num_shots_v0.5.npy", write_v05, "NumPy .npy array of counts"),
        ("num_shots_v1.0.json", write_v1, "JSON list [id, count, id, count, ...]"),
    ],
)
def test_authors_files_give_their_counts_and_weights(synth_dataset, tmp_path, name, write, fmt):
    path = tmp_path / name
    write(path)
    cfg = cfg_for(path)
    with recording("disalign_det") as log:
        counts, names = class_frequencies_from_config(cfg)
        weights = class_weights_from_config(cfg)
    assert counts == [float(c) for c in COUNTS] and names is None
    assert torch.allclose(weights, authors_weights(COUNTS), rtol=1e-5)
    line = f"DisAlign class frequencies from {KEY}={str(path)!r} ({fmt}"
    assert any(m.startswith(line) and m.endswith(f": {NUM_CLASSES} classes") for m in log.lines())


def test_authors_file_of_another_dataset_names_its_format(synth_dataset, tmp_path):
    """E.g. num_shots_v1.0.json (1203 classes) for a config of another class count."""
    path = tmp_path / "num_shots_v1.0.json"
    path.write_text(json.dumps([x for i in range(1, 1204) for x in (i, 7)]))
    with pytest.raises(ValueError) as e:
        class_frequencies_from_config(cfg_for(path))
    msg = str(e.value)
    assert f"{KEY}={str(path)!r} (JSON list [id, count, id, count, ...]" in msg
    assert f"have 1203 entries, but MODEL.ROI_HEADS.NUM_CLASSES is {NUM_CLASSES}" in msg

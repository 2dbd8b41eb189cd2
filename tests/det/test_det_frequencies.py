"""Class frequencies and re-weighting weights from configs, and each bad input's error."""

import json
import logging
import os

import pytest
import torch
from det_testing import NUM_CLASSES, TRAIN, tiny_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.lvis_v1_category_image_count import LVIS_CATEGORY_IMAGE_COUNT
from detectron2.modeling import build_model

from disalign_core import grw_class_weights, write_class_frequencies
from disalign_det import (
    class_frequencies_from_config,
    class_weights_from_config,
    count_class_images,
    count_class_instances,
    register_disalign_instances,
)


def cfg_with(*opts):
    return tiny_cfg(opts=["MODEL.DISALIGN.REWEIGHT", "True", *opts])


def test_counted_and_metadata_agree_with_the_generator(synth_dataset):
    cfg = cfg_with(
        "DATASETS.TRAIN", f"('{TRAIN}',)", "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES)
    )
    from_meta, names = class_frequencies_from_config(cfg)
    counted = count_class_images(DatasetCatalog.get(TRAIN), NUM_CLASSES)
    assert from_meta == counted == synth_dataset["train_image_counts"]
    assert names == synth_dataset["class_names"]
    # the counts span LVIS's rare, common and frequent groups
    assert min(counted) <= 10 and any(10 < c <= 100 for c in counted) and max(counted) > 100


def test_counting_route_lvis_v05(tmp_path, monkeypatch):
    """LVIS v0.5's built-in metadata has no counts: they are counted from its json."""
    json_file = MetadataCatalog.get("lvis_v0.5_train").json_file
    assert not os.path.isabs(json_file), "DETECTRON2_DATASETS must be unset for this test"
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.dirname(json_file))
    cats = [
        {"id": i, "name": f"c{i}", "synonyms": [f"c{i}"], "frequency": "r"} for i in range(1, 1231)
    ]
    images, anns = [], []
    for img_id, classes in enumerate([[1, 5], [5], [5, 1230, 1230]], 1):
        images.append(
            {
                "id": img_id,
                "width": 10,
                "height": 10,
                "coco_url": f"http://x/train2017/{img_id}.jpg",
            }
        )
        for c in classes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": c,
                    "bbox": [1, 1, 4, 4],
                    "area": 16,
                    "segmentation": [[1, 1, 5, 1, 5, 5]],
                }
            )
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    cfg = cfg_with(
        "DATASETS.TRAIN",
        "('lvis_v0.5_train',)",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "1230",
        "MODEL.DISALIGN.ZERO_COUNT",
        "warn",
    )
    counts, names = class_frequencies_from_config(cfg)
    assert len(counts) == 1230 and counts[0] == 1 and counts[4] == 3 and counts[1229] == 1
    assert sum(counts) == 5 and names == MetadataCatalog.get("lvis_v0.5_train").thing_classes


def test_lvis_v1_metadata_route():
    cfg = cfg_with("DATASETS.TRAIN", "('lvis_v1_train',)", "MODEL.ROI_HEADS.NUM_CLASSES", "1203")
    counts, _ = class_frequencies_from_config(cfg)  # no json needed: v1 metadata has counts
    expected = [c["image_count"] for c in sorted(LVIS_CATEGORY_IMAGE_COUNT, key=lambda c: c["id"])]
    assert counts == expected
    weights = class_weights_from_config(cfg)
    assert torch.allclose(weights, grw_class_weights(expected, 0.8))


@pytest.mark.parametrize("suffix", [".json", ".txt"])
def test_frequency_file_wins(tmp_path, synth_dataset, suffix):
    path = str(tmp_path / f"freq{suffix}")
    write_class_frequencies(path, [float(c + 1) for c in range(NUM_CLASSES)])
    cfg = cfg_with(
        "DATASETS.TRAIN",
        f"('{TRAIN}',)",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        str(NUM_CLASSES),
        "MODEL.DISALIGN.FREQUENCY_FILE",
        path,
        "MODEL.DISALIGN.RHO",
        "1.0",
    )
    w = class_weights_from_config(cfg)
    expected = 1.0 / torch.arange(1, NUM_CLASSES + 1).double()
    assert torch.allclose(w.double(), expected / expected.sum() * NUM_CLASSES, atol=1e-6)


def test_frequency_file_with_classes_in_another_order(tmp_path, synth_dataset):
    names = list(synth_dataset["class_names"])
    path = str(tmp_path / "freq.json")
    write_class_frequencies(path, [1.0] * NUM_CLASSES, names)
    opts = ("DATASETS.TRAIN", f"('{TRAIN}',)", "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES))
    assert (
        class_frequencies_from_config(cfg_with(*opts, "MODEL.DISALIGN.FREQUENCY_FILE", path))[1]
        == names
    )
    names[0], names[1] = names[1], names[0]
    write_class_frequencies(path, [1.0] * NUM_CLASSES, names)
    with pytest.raises(
        ValueError,
        match=f"FREQUENCY_FILE.*class 0: '{names[0]}' in the file, '{names[1]}' in the data",
    ):
        class_frequencies_from_config(cfg_with(*opts, "MODEL.DISALIGN.FREQUENCY_FILE", path))


def test_model_gets_the_weights(synth_dataset):
    cfg = cfg_with(
        "DATASETS.TRAIN", f"('{TRAIN}',)", "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES)
    )
    model = build_model(cfg)
    expected = grw_class_weights(synth_dataset["train_image_counts"], 0.8)
    assert torch.equal(model.roi_heads.box_predictor.class_weights, expected)
    # not persistent: weights come from the data, checkpoints stay loadable either way
    assert not any("class_weights" in k for k in model.state_dict())


def test_wrong_class_count_in_frequencies(tmp_path, synth_dataset):
    cfg = cfg_with("DATASETS.TRAIN", f"('{TRAIN}',)", "MODEL.ROI_HEADS.NUM_CLASSES", "36")
    with pytest.raises(ValueError, match="have 12 entries, but MODEL.ROI_HEADS.NUM_CLASSES is 36"):
        class_frequencies_from_config(cfg)
    path = str(tmp_path / "f.txt")
    write_class_frequencies(path, [3.0, 4.0])
    cfg = cfg_with("MODEL.DISALIGN.FREQUENCY_FILE", path, "MODEL.ROI_HEADS.NUM_CLASSES", "36")
    with pytest.raises(ValueError, match="FREQUENCY_FILE.*have 2 entries, but .*NUM_CLASSES is 36"):
        build_model(cfg)


def test_missing_frequency_data(tmp_path):
    with pytest.raises(ValueError, match="DATASETS.TRAIN is empty and .*FREQUENCY_FILE is not set"):
        class_frequencies_from_config(cfg_with("DATASETS.TRAIN", "()"))
    with pytest.raises(ValueError, match=r"\['no_such_dataset'\] are not registered"):
        class_frequencies_from_config(cfg_with("DATASETS.TRAIN", "('no_such_dataset',)"))
    with pytest.raises(
        FileNotFoundError,
        match=r"file '.*nope.txt' \(config key MODEL.DISALIGN.FREQUENCY_FILE\) not found",
    ):
        class_frequencies_from_config(
            cfg_with("MODEL.DISALIGN.FREQUENCY_FILE", str(tmp_path / "nope.txt"))
        )


def test_zero_count_class_and_negative_rho(tmp_path):
    path = str(tmp_path / "f.txt")
    counts = [5.0] * NUM_CLASSES
    counts[3] = 0.0
    write_class_frequencies(path, counts, [f"class{i}" for i in range(NUM_CLASSES)])
    base = (
        "MODEL.DISALIGN.FREQUENCY_FILE", path, "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
        "DATASETS.TRAIN", "()",  # the file's own class names, no dataset to compare them with
    )  # fmt: skip
    with pytest.raises(ValueError, match="no training examples .*class3"):
        class_weights_from_config(cfg_with(*base))  # default ZERO_COUNT: "error"
    with pytest.warns(UserWarning, match="class3"):
        w = class_weights_from_config(cfg_with(*base, "MODEL.DISALIGN.ZERO_COUNT", "warn"))
    assert torch.isfinite(w).all()
    with pytest.raises(ValueError, match="rho must be >= 0"):
        class_weights_from_config(cfg_with(*base, "MODEL.DISALIGN.RHO", "-0.5"))


def test_every_rank_uses_rank0_frequencies(tmp_path, monkeypatch):
    """With several processes the counts of rank 0 win, whatever this rank read."""
    from disalign_det import class_frequencies as cf

    path = str(tmp_path / "mine.txt")
    write_class_frequencies(path, [5.0, 6.0])
    rank0 = ([1.0, 2.0], None)
    monkeypatch.setattr(cf.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(cf.comm, "all_gather", lambda mine: [rank0, mine])
    cfg = cfg_with("MODEL.DISALIGN.FREQUENCY_FILE", path, "MODEL.ROI_HEADS.NUM_CLASSES", "2")
    assert class_frequencies_from_config(cfg) == ([1.0, 2.0], None)


def _write_lvis_json(path, image_classes, categories):
    """A tiny LVIS-format json: image i holds one annotation per entry of image_classes[i]."""
    images, anns = [], []
    for img_id, classes in enumerate(image_classes, 1):
        images.append(
            {"id": img_id, "width": 10, "height": 10, "coco_url": f"http://x/train/{img_id}.jpg"}
        )
        for c in classes:
            anns.append(
                {
                    "id": len(anns) + 1, "image_id": img_id, "category_id": c,
                    "bbox": [1, 1, 4, 4], "area": 16, "segmentation": [[1, 1, 5, 1, 5, 5]],
                }
            )  # fmt: skip
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": categories}, f)


@pytest.mark.parametrize("with_json_counts", [False, True], ids=["counted", "json_counts"])
def test_frequency_type_instances(tmp_path, with_json_counts):
    """Class 1: 2 images with 3 instances; class 2: 1 image with 4; class 3: 1 image, 1."""
    cats = [{"id": i, "name": f"k{i}"} for i in (1, 2, 3)]
    if with_json_counts:  # deliberately not the annotations' numbers: the json's must be used
        for c, (images, instances) in zip(cats, [(7, 70), (8, 80), (9, 90)]):
            c.update(image_count=images, instance_count=instances)
    path = str(tmp_path / "inst.json")
    _write_lvis_json(path, [[1, 1, 2, 2, 2, 2], [1], [3]], cats)
    name = f"det_test_instances_{with_json_counts}"
    register_disalign_instances(name, path, str(tmp_path))
    opts = ("DATASETS.TRAIN", f"('{name}',)", "MODEL.ROI_HEADS.NUM_CLASSES", "3")
    images, _ = class_frequencies_from_config(cfg_with(*opts))
    instances, _ = class_frequencies_from_config(
        cfg_with(*opts, "MODEL.DISALIGN.FREQUENCY_TYPE", "instances")
    )
    if with_json_counts:
        assert (images, instances) == ([7.0, 8.0, 9.0], [70.0, 80.0, 90.0])
    else:
        assert (images, instances) == ([2.0, 1.0, 1.0], [3.0, 4.0, 1.0])
        records = DatasetCatalog.get(name)
        assert count_class_instances(records, 3) == [3, 4, 1]


def test_bad_frequency_type():
    with pytest.raises(ValueError, match="FREQUENCY_TYPE is 'boxes'; expected one of"):
        class_frequencies_from_config(cfg_with("MODEL.DISALIGN.FREQUENCY_TYPE", "boxes"))


def test_json_image_count_of_unannotated_class_warns(tmp_path, caplog):
    cats = [{"id": i, "name": f"u{i}", "image_count": n} for i, n in ((1, 2), (2, 5), (3, 1))]
    path = str(tmp_path / "u.json")
    _write_lvis_json(path, [[1], [1, 3]], cats)  # class 2 has no annotation at all
    register_disalign_instances("det_test_unannotated", path, str(tmp_path))
    opts = ("DATASETS.TRAIN", "('det_test_unannotated',)", "MODEL.ROI_HEADS.NUM_CLASSES", "3")
    with caplog.at_level(logging.WARNING, logger="disalign_det"):
        counts, _ = class_frequencies_from_config(cfg_with(*opts))
    assert counts == [2.0, 5.0, 1.0]  # the json's counts are still used
    assert "1 class(es) a nonzero image_count" in caplog.text and "u2" in caplog.text
    assert "u1" not in caplog.text and "u.json" in caplog.text


def test_frequency_file_with_other_class_count_than_dataset(tmp_path):
    """A file whose names are a prefix of the dataset's classes: an error, no StopIteration."""
    name = "det_test_13_classes"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(thing_classes=[f"c{i}" for i in range(13)])
    path = str(tmp_path / "f.json")
    write_class_frequencies(path, [1.0] * 12, [f"c{i}" for i in range(12)])
    cfg = cfg_with(
        "DATASETS.TRAIN", f"('{name}',)", "MODEL.ROI_HEADS.NUM_CLASSES", "12",
        "MODEL.DISALIGN.FREQUENCY_FILE", path,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"f.json.*list 12 classes but det_test_13_classes has 13"):
        class_frequencies_from_config(cfg)

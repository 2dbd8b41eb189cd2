"""The held-out calibration split (DATASETS.HELDOUT) on the session's generated LVIS-format
dataset: detectron2's DatasetCatalog, its real train loader and trainer."""

import logging
import os

import pytest
from det_testing import NUM_CLASSES, REPO, TRAIN, tiny_cfg
from detectron2.data import DatasetCatalog

from disalign_demo.det import add_tiny_backbone_config
from disalign_det import class_frequencies_from_config, count_class_images, engine
from disalign_det.data import heldout_dataset_dicts
from disalign_det.engine import Trainer

Q = os.path.join(REPO, "configs", "detectron2", "quick_schedules")
STAGE1_CFG = os.path.join(Q, "mask_rcnn_tiny_instant_test.yaml")
K = NUM_CLASSES


def cfg_of(part="stage1", fraction="0.2", seed="0", *extra):
    return tiny_cfg(
        STAGE1_CFG,
        [
            "DATASETS.TRAIN", f"('{TRAIN}',)",
            "DATASETS.TEST", "()",
            "MODEL.ROI_HEADS.NUM_CLASSES", str(K),
            "DATASETS.HELDOUT.FRACTION", fraction,
            "DATASETS.HELDOUT.PART", part,
            "DATASETS.HELDOUT.SEED", seed,
            *extra,
        ],
    )  # fmt: skip


@pytest.fixture
def disalign_log(caplog):
    """caplog of the "detectron2.disalign" logger, which detectron2's setup_logger cuts off from
    the root logger (propagate=False on "detectron2") once a trainer has been set up."""
    logger = logging.getLogger("detectron2.disalign")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def ids(records):
    return [r["image_id"] for r in records]


def test_parts_disjoint_complete_deterministic_stratified(synth_dataset):
    everything = DatasetCatalog.get(TRAIN)
    stage1 = heldout_dataset_dicts(cfg_of("stage1"))
    calibration = heldout_dataset_dicts(cfg_of("calibration"))
    assert not set(ids(stage1)) & set(ids(calibration))
    # The generated images all have annotations: no filter removes any.
    assert sorted(ids(stage1) + ids(calibration)) == sorted(ids(everything))
    assert abs(len(calibration) - 0.2 * len(everything)) <= K  # one rounding per stratum
    # deterministic; another seed, another split
    assert ids(heldout_dataset_dicts(cfg_of("calibration"))) == ids(calibration)
    assert ids(heldout_dataset_dicts(cfg_of("calibration", seed="1"))) != ids(calibration)
    # stratified: every class keeps images in stage 1, and each class's share is ~ the fraction
    full, part1 = count_class_images(everything, K), count_class_images(stage1, K)
    assert all(p > 0 for c, p in zip(full, part1) if c > 0)
    for c, p in zip(full, count_class_images(calibration, K)):
        if c >= 10:
            assert abs(p / c - 0.2) < 0.12, (p, c)


def test_class_frequencies_stay_those_of_the_whole_training_set(synth_dataset):
    counts, _ = class_frequencies_from_config(cfg_of("calibration"))
    assert counts == [float(c) for c in synth_dataset["train_image_counts"]]


def test_the_real_loader_reads_only_the_part(synth_dataset, disalign_log):
    cfg = cfg_of("calibration", "0.2", "0", "SOLVER.IMS_PER_BATCH", "4")
    part = set(ids(heldout_dataset_dicts(cfg)))
    total = len(DatasetCatalog.get(TRAIN))
    loader = Trainer.build_train_loader(cfg)
    assert f"training on the 'calibration' part, {len(part)} of {total} images" in disalign_log.text
    seen = set()
    for i, batch in enumerate(loader):
        seen |= {d["image_id"] for d in batch}
        if i == 30:
            break
    assert seen <= part and len(seen) > len(part) // 2


def test_trainer_trains_on_the_named_part(synth_dataset, tmp_path, disalign_log):
    """train_net.py's code (engine.main), stage 1 on the stage1 part: the trainer's loader is
    the split's."""
    argv = ["--config-file", STAGE1_CFG,
            "DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", "()",
            "MODEL.ROI_HEADS.NUM_CLASSES", str(K), "SOLVER.MAX_ITER", "1",
            "SOLVER.IMS_PER_BATCH", "2", "DATASETS.HELDOUT.FRACTION", "0.3",
            "OUTPUT_DIR", str(tmp_path)]  # fmt: skip
    engine.main(engine.argument_parser().parse_args(argv), [add_tiny_backbone_config])
    n = len(heldout_dataset_dicts(cfg_of("stage1", "0.3")))
    total = len(DatasetCatalog.get(TRAIN))
    assert f"training on the 'stage1' part, {n} of {total} images" in disalign_log.text
    assert n < total


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("FRACTION", "1.5", r"DATASETS.HELDOUT.FRACTION = 1.5"),
        ("FRACTION", "-0.1", r"DATASETS.HELDOUT.FRACTION = -0.1"),
        ("PART", "calib", r"DATASETS.HELDOUT.PART = 'calib'"),
    ],
)
def test_bad_fraction_or_part_is_refused_naming_the_key(synth_dataset, tmp_path, key, value,
                                                        message):  # fmt: skip
    out = tmp_path / "never_written"
    argv = ["--config-file", STAGE1_CFG, "DATASETS.TRAIN", f"('{TRAIN}',)",
            "MODEL.ROI_HEADS.NUM_CLASSES", str(K), "DATASETS.HELDOUT.FRACTION", "0.2",
            f"DATASETS.HELDOUT.{key}", value, "OUTPUT_DIR", str(out)]  # fmt: skip
    with pytest.raises(ValueError, match=message):
        engine.main(engine.argument_parser().parse_args(argv), [add_tiny_backbone_config])
    assert not out.exists()
    with pytest.raises(ValueError, match=message):
        heldout_dataset_dicts(cfg_of(**{key.lower(): value}) if key == "PART"
                              else cfg_of(fraction=value))  # fmt: skip


def test_heldout_off_by_default(synth_dataset, disalign_log):
    cfg = tiny_cfg(STAGE1_CFG, ["DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", "()"])
    assert cfg.DATASETS.HELDOUT.FRACTION == 0.0
    Trainer.build_train_loader(cfg)
    assert "held-out" not in disalign_log.text

"""A stage-2 run given the wrong stage-1 checkpoint is refused before training, through the
user's entry point (``disalign_det.engine.main``) on the tiny CPU configs: another
architecture (Cascade R-CNN into Mask R-CNN), a checkpoint without the backbone, a linear
zoo-format checkpoint for a cosine config, weights of another shape. What a stage-1 checkpoint
need not hold (the model's non-persistent buffers, BatchNorm counters) is accepted, and stage 1
still loads a backbone-only (ImageNet-style) checkpoint. A checkpoint URL that cannot be
downloaded is an error naming it and MODEL.WEIGHTS."""

import os

import pytest
import torch
from det_testing import CONFIGS, NUM_CLASSES, TRAIN, tiny_cfg
from det_zoo_testing import recording, save_zoo_pkl, serve
from detectron2.modeling import build_model

from disalign_core import Stage1CheckpointMismatch
from disalign_demo.det import add_tiny_backbone_config
from disalign_det import DisAlignCheckpointer, engine

Q = os.path.join(CONFIGS, "quick_schedules")
STAGE1 = os.path.join(Q, "mask_rcnn_tiny_instant_test.yaml")
STAGE2 = os.path.join(Q, "disalign_mask_rcnn_tiny_instant_test.yaml")
CASCADE = os.path.join(Q, "cascade_mask_rcnn_tiny_instant_test.yaml")
LINEAR_INTO_COSINE = (
    "the checkpoint has a linear classifier (cls_score.weight/bias) while the config asks "
    'MODEL.DISALIGN.CLASSIFIER "cosine"; the zoo models are linear; use the linear stage-2 '
    "config, or train a cosine stage 1 with our *_cos.yaml first."
)


# a stage-2 model built without the dataset (its GRW weights need the class frequencies)
STAGE2_NO_DATA = [
    "MODEL.ROI_HEADS.NUM_CLASSES",
    str(NUM_CLASSES),
    "MODEL.DISALIGN.REWEIGHT",
    "False",
]


def state_dict_of(config_file, opts=()):
    torch.manual_seed(0)
    cfg = tiny_cfg(config_file, ["MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES), *opts])
    return build_model(cfg).state_dict()


def run(config_file, weights, output_dir, *opts):
    argv = ["--config-file", config_file,
            "DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", "()",
            "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
            "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "2",
            "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(output_dir), *opts]  # fmt: skip
    return engine.main(engine.argument_parser().parse_args(argv), [add_tiny_backbone_config])


def assert_nothing_trained(output_dir):
    """Only what detectron2 writes at setup (config.yaml, log.txt, metrics/events): no model."""
    written = [p.name for p in output_dir.rglob("*") if p.is_file()]
    assert not [n for n in written if n.endswith(".pth") or n == "last_checkpoint"], written


def test_cascade_checkpoint_into_mask_rcnn_stage2(synth_dataset, tmp_path):
    weights = tmp_path / "cascade_model_final.pkl"
    save_zoo_pkl(state_dict_of(CASCADE), str(weights))
    with pytest.raises(Stage1CheckpointMismatch) as e:
        run(STAGE2, weights, tmp_path / "out")
    msg = str(e.value)
    assert msg.startswith(f"the stage-1 checkpoint {weights} (MODEL.WEIGHTS) does not fit")
    # the keys of the two ROI heads (Cascade R-CNN has a box head and predictor per stage)
    assert "Not in the checkpoint (8 keys): roi_heads: 8 (roi_heads.box_head.fc1.weight" in msg
    assert "In the checkpoint but not in the model (24 keys): roi_heads: 24" in msg
    assert "roi_heads.box_head.0.fc1.weight" in msg
    assert "Likely cause: the weights of roi_heads differ" in msg
    assert "another architecture or head" in msg
    assert "Fix: set MODEL.WEIGHTS to the stage-1 checkpoint of this config's model" in msg
    assert_nothing_trained(tmp_path / "out")


def test_checkpoint_without_backbone_into_stage2(synth_dataset, tmp_path):
    state = state_dict_of(STAGE1)
    weights = tmp_path / "no_backbone.pth"
    torch.save(
        {"model": {k: v for k, v in state.items() if not k.startswith("backbone.")}}, weights
    )
    with pytest.raises(Stage1CheckpointMismatch) as e:
        run(STAGE2, weights, tmp_path / "out")
    msg = str(e.value)
    # BatchNorm counters are not required (below)
    backbone = [
        k for k in state if k.startswith("backbone.") and not k.endswith("num_batches_tracked")
    ]
    assert f"{weights} (MODEL.WEIGHTS)" in msg
    assert f"Not in the checkpoint ({len(backbone)} keys): backbone: {len(backbone)} (" in msg
    assert backbone[0] in msg and "In the checkpoint but not" not in msg
    assert_nothing_trained(tmp_path / "out")


def test_linear_zoo_file_into_cosine_stage2(synth_dataset, tmp_path):
    weights = tmp_path / "model_final_571f7c.pkl"
    save_zoo_pkl(state_dict_of(STAGE1), str(weights))
    with pytest.raises(Stage1CheckpointMismatch) as e:
        run(STAGE2, weights, tmp_path / "out", "MODEL.DISALIGN.CLASSIFIER", "cosine")
    assert str(e.value) == f"{weights} (MODEL.WEIGHTS): {LINEAR_INTO_COSINE}"
    assert_nothing_trained(tmp_path / "out")


def test_weights_of_another_shape_are_named_with_both_shapes(tmp_path):
    state = state_dict_of(STAGE1)
    key = "roi_heads.mask_head.predictor.weight"  # (K, C, 1, 1): the mask head's class count
    state[key] = torch.zeros((NUM_CLASSES + 3, *state[key].shape[1:]))
    weights = tmp_path / "other_mask_classes.pth"
    torch.save({"model": state}, weights)
    model = build_model(tiny_cfg(STAGE2, STAGE2_NO_DATA))
    with pytest.raises(Stage1CheckpointMismatch) as e:
        DisAlignCheckpointer(model, calibration_stage=True).resume_or_load(
            str(weights), resume=False
        )
    msg = str(e.value)
    assert f"{weights} (MODEL.WEIGHTS) does not fit the stage-2 model: 1 weights" in msg
    assert (
        f"{key}: ({NUM_CLASSES + 3}, 32, 1, 1) in the checkpoint, ({NUM_CLASSES}, 32, 1, 1)" in msg
    )
    assert "MODEL.ROI_HEADS.NUM_CLASSES" in msg


def test_what_a_stage1_checkpoint_need_not_hold(tmp_path):
    """Older detectron2 checkpoints hold pixel_mean/std and the anchors (now non-persistent
    buffers, computed from the config), and a model trained with BatchNorm has batch counters
    that a FrozenBN model lacks. None of these is a mismatch, and the log says what was not
    needed."""
    state = state_dict_of(STAGE1)  # BatchNorm backbone
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert counters
    state["pixel_mean"] = torch.zeros(3, 1, 1)
    state["pixel_std"] = torch.ones(3, 1, 1)
    state["proposal_generator.anchor_generator.cell_anchors.0"] = torch.zeros(3, 4)
    weights = tmp_path / "old_format.pkl"
    save_zoo_pkl(state, str(weights))
    frozen_bn = STAGE2_NO_DATA + ["MODEL.TINY_BACKBONE.NORM", "FrozenBN"]
    model = build_model(tiny_cfg(STAGE2, frozen_bn))
    with recording("disalign_det", "fvcore") as log:
        DisAlignCheckpointer(model, calibration_stage=True).resume_or_load(
            str(weights), resume=False
        )
    (line,) = [m for m in log.lines() if m.startswith("DisAlign stage 2: loaded all")]
    ignored = sorted(counters + ["pixel_mean", "pixel_std"])
    assert f"not needed from the checkpoint: {', '.join(ignored)} (computed" in line
    assert "not found in the checkpoint" not in log.text()  # fvcore has nothing to warn about
    assert "not used by the model" not in log.text()


def test_stage1_still_loads_a_backbone_only_checkpoint(synth_dataset, tmp_path):
    """No guard in stage 1: ImageNet weights (a backbone alone) initialise a detector."""
    state = state_dict_of(STAGE1)
    weights = tmp_path / "backbone.pth"
    torch.save({"model": {k: v for k, v in state.items() if k.startswith("backbone.")}}, weights)
    run(STAGE1, weights, tmp_path / "out")
    assert (tmp_path / "out" / "model_final.pth").exists()


def test_checkpoint_url_that_cannot_be_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    model = build_model(tiny_cfg(STAGE2, STAGE2_NO_DATA))
    (tmp_path / "served").mkdir()
    with serve(str(tmp_path / "served")) as (port, requests):
        url = f"http://127.0.0.1:{port}/detectron2/missing/model_final.pkl"
        with pytest.raises(OSError) as e:
            DisAlignCheckpointer(model, calibration_stage=True).resume_or_load(url, resume=False)
    assert requests == ["/detectron2/missing/model_final.pkl"]
    assert str(e.value).startswith(f"cannot download {url} (MODEL.WEIGHTS): HTTP Error 404")
    assert str(e.value).endswith("set MODEL.WEIGHTS to the local file.")
    # nothing (half-)downloaded is cached, only iopath's lock file
    assert not list((tmp_path / "cache").rglob("*.pkl")) + list((tmp_path / "cache").rglob("*.tmp"))

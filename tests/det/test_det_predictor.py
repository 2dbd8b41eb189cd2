"""Predictions of a trained DisAlign detector: detectron2's own DefaultPredictor with a stage-2
config and checkpoint, and projects/DisAlign/demo.py (stage 1 and DisAlign side by side), on a
tiny stage 1 and stage 2 trained here on the generated data."""

import importlib.util
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from det_testing import NUM_CLASSES, REPO, TRAIN, VAL, tiny_cfg
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from PIL import Image

from disalign_core import groups_by_count
from disalign_demo.det import add_tiny_backbone_config
from disalign_det import engine

DEMO = os.path.join(REPO, "projects", "DisAlign", "demo.py")
Q = os.path.join(REPO, "configs", "detectron2", "quick_schedules")
STAGE1_CFG = os.path.join(Q, "mask_rcnn_tiny_instant_test.yaml")
STAGE2_CFG = os.path.join(Q, "disalign_mask_rcnn_tiny_instant_test.yaml")


def _load_demo():
    spec = importlib.util.spec_from_file_location("disalign_predict_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


@pytest.fixture(autouse=True)
def restore_loggers():
    """demo.main sets up detectron2's loggers as a script does (handlers, propagate=False);
    restore them so that later tests' caplog still sees disalign_det's records."""
    names = ("fvcore", "disalign_det", "detectron2")
    saved = {
        n: (
            list(logging.getLogger(n).handlers),
            logging.getLogger(n).propagate,
            logging.getLogger(n).level,
        )
        for n in names
    }
    yield
    for n, (handlers, propagate, level) in saved.items():
        log = logging.getLogger(n)
        log.handlers[:] = handlers
        log.propagate = propagate
        log.setLevel(level)


@pytest.fixture(scope="module")
def trained(synth_dataset, tmp_path_factory):
    """(stage-1 checkpoint, stage-2 checkpoint): a few iterations each, no evaluation."""
    out = tmp_path_factory.mktemp("predictor")
    paths = []
    for stage, (config, iters) in enumerate(((STAGE1_CFG, 3), (STAGE2_CFG, 3)), start=1):
        opts = [
            "DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", "()",
            "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
            "SOLVER.MAX_ITER", str(iters), "SOLVER.IMS_PER_BATCH", "4",
            "OUTPUT_DIR", str(out / f"stage{stage}"),
        ]  # fmt: skip
        if stage == 2:
            opts += ["MODEL.WEIGHTS", paths[0]]
        args = engine.argument_parser().parse_args(["--config-file", config, *opts])
        engine.main(args, [add_tiny_backbone_config])
        paths.append(str(out / f"stage{stage}" / "model_final.pth"))
    return paths


@pytest.fixture(scope="module")
def val_images(synth_dataset, tmp_path_factory):
    """A folder with three of the val split's images."""
    folder = tmp_path_factory.mktemp("val_images")
    for name in sorted(os.listdir(os.path.join(synth_dataset["image_root"], "val")))[:3]:
        shutil.copy(os.path.join(synth_dataset["image_root"], "val", name), folder / name)
    return folder


def test_default_predictor_with_stage2_config_and_checkpoint(trained, val_images):
    _, stage2 = trained
    # DATASETS.TRAIN registered: the stage-2 config's MODEL.DISALIGN.REWEIGHT builds the GRW
    # weights from it (or set REWEIGHT False, as demo.py does)
    opts = ["MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES), "MODEL.WEIGHTS", stage2,
            "DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", f"('{VAL}',)",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]  # fmt: skip
    cfg = tiny_cfg(STAGE2_CFG, opts)
    cfg.freeze()
    image = read_image(str(sorted(val_images.iterdir())[0]), format="BGR")

    predictor = DefaultPredictor(cfg)  # detectron2's own, with our stage-2 config
    instances = predictor(image)["instances"]
    assert instances.image_size == image.shape[:2]
    assert {"pred_boxes", "scores", "pred_classes", "pred_masks"} <= set(instances.get_fields())
    assert 0 < len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE
    assert instances.pred_boxes.tensor.shape == (len(instances), 4)
    assert ((0 <= instances.pred_classes) & (instances.pred_classes < NUM_CLASSES)).all()
    assert ((0 <= instances.scores) & (instances.scores <= 1)).all()

    # the trained calibration is in the model; demo.py's predictor (DisAlignCheckpointer)
    # predicts the same
    state = torch.load(stage2, weights_only=False)["model"]
    beta = "roi_heads.box_predictor.calibration.beta"
    assert state[beta].abs().sum() > 0
    assert torch.equal(predictor.model.state_dict()[beta], state[beta])
    ours = demo.build_predictor(demo.setup_cfg(STAGE2_CFG, opts, 0.0, [add_tiny_backbone_config]))
    assert not demo.calibration_is_identity(ours.model)
    theirs = ours(image)["instances"]
    assert torch.equal(theirs.pred_classes, instances.pred_classes)
    assert torch.allclose(theirs.scores, instances.scores)


def test_predictor_refuses_checkpoint_of_other_class_count(trained):
    opts = ["MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES + 1), "MODEL.WEIGHTS", trained[1]]
    cfg = demo.setup_cfg(STAGE2_CFG, opts, 0.5, [add_tiny_backbone_config])
    with pytest.raises(ValueError, match=r"cls_score.weight has shape \(13, 128\)"):
        demo.build_predictor(cfg)


def test_class_groups_from_train_counts_or_lvis_json(synth_dataset):
    expected = groups_by_count(synth_dataset["train_image_counts"])
    assert "rare" in expected and "frequent" in expected
    opts = ["MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES), "DATASETS.TEST", f"('{VAL}',)"]
    # class_image_count of the registered training split
    cfg = demo.setup_cfg(STAGE2_CFG, opts + ["DATASETS.TRAIN", f"('{TRAIN}',)"], 0.5,
                         [add_tiny_backbone_config])  # fmt: skip
    assert demo.class_groups(cfg) == (expected, f"class_image_count of {TRAIN}")
    # no training data registered: LVIS's frequency field of the val json's categories
    cfg = demo.setup_cfg(STAGE2_CFG, opts + ["DATASETS.TRAIN", "('not_registered',)"], 0.5,
                         [add_tiny_backbone_config])  # fmt: skip
    groups, source = demo.class_groups(cfg)
    assert groups == expected and source.endswith(synth_dataset["val_json"])


def test_demo_script_side_by_side_for_a_folder(trained, val_images, synth_dataset, tmp_path):
    stage1, stage2 = trained
    out = tmp_path / "vis"
    cmd = [
        sys.executable, DEMO, "--demo",
        "--register", VAL, synth_dataset["val_json"], synth_dataset["image_root"],
        "--config-file", STAGE2_CFG, "--input", str(val_images), "--output", str(out),
        "--compare-weights", stage1, "--confidence-threshold", "0.05",
        "--opts", "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES), "MODEL.WEIGHTS", stage2,
        "DATASETS.TEST", f"('{VAL}',)",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO] + sys.path))
    proc = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    inputs = sorted(p.name for p in val_images.iterdir())
    assert sorted(p.name for p in out.iterdir()) == inputs
    for name in inputs:
        h, w = np.asarray(Image.open(val_images / name)).shape[:2]
        vis = np.asarray(Image.open(out / name))
        assert vis.shape[1] == 2 * w and vis.shape[0] > h  # side by side, under the titles
    log = proc.stderr + proc.stdout
    assert f"class groups: the categories' frequency in {synth_dataset['val_json']}" in log
    assert "detections above 0.05: stage 1 " in log and "; DisAlign " in log


def test_demo_one_model_one_file(trained, val_images, tmp_path):
    image = sorted(val_images.iterdir())[0]
    out = tmp_path / "one.png"
    assert demo.main(["--demo", "--config-file", STAGE2_CFG, "--input", str(image),
                      "--output", str(out), "--opts", "MODEL.ROI_HEADS.NUM_CLASSES",
                      str(NUM_CLASSES), "MODEL.WEIGHTS", trained[1]]) == 0  # fmt: skip
    assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(image)).shape


def test_demo_bad_input_is_a_clear_error(trained, tmp_path, capsys):
    base = ["--demo", "--config-file", STAGE2_CFG, "--output", str(tmp_path / "out"),
            "--opts", "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES)]  # fmt: skip
    missing = tmp_path / "no_such_folder"
    with pytest.raises(SystemExit) as e:
        demo.main(["--input", str(missing), "--compare-weights", trained[0], *base])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--input: not found: '{missing}' (no such file or folder" in err

    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        demo.main(["--input", str(tmp_path / "empty"), *base])
    assert "the folder holds no image" in capsys.readouterr().err

    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert demo.main(["--input", str(image), *base, "MODEL.WEIGHTS", str(tmp_path / "no.pth")]) == 1
    assert f"MODEL.WEIGHTS '{tmp_path / 'no.pth'}' is not a file" in capsys.readouterr().err
    assert demo.main(["--input", str(image), *base, "MODEL.WEIGHTS", ""]) == 1
    assert "MODEL.WEIGHTS is empty: the model would predict with random weights" in (
        capsys.readouterr().err
    )
    # the demo's configs without --demo
    assert demo.main(["--input", str(image), *base[1:], "MODEL.WEIGHTS", trained[1]]) == 1
    assert (
        "is the demo's tiny backbone: the configs of configs/detectron2/demo/ and "
        "quick_schedules/ need --demo" in capsys.readouterr().err
    )
    assert not (tmp_path / "out" / "x.png").exists()

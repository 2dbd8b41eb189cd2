"""Every shipped detectron2 YAML parses into a config with the DisAlign keys, and says only what
differs from its base."""

import glob
import os

import pytest
import yaml
from det_testing import CONFIGS, tiny_cfg
from detectron2 import model_zoo
from detectron2.modeling import build_model

ALL = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))
LEAVES = [p for p in ALL if not os.path.basename(p).startswith("Base-")]


def test_config_tree_is_complete():
    names = {os.path.relpath(p, CONFIGS) for p in ALL}
    for version in ("LVISv0.5", "LVISv1"):
        for arch in ("mask_rcnn", "cascade_mask_rcnn"):
            for backbone in ("R_50", "R_101", "X_101_32x8d"):
                for head in ("", "_cos"):
                    stem = f"{version}/{arch}_{backbone}_FPN_1x{head}.yaml"
                    assert stem in names
                    assert stem.replace("/", "/disalign_") in names


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_every_config_parses(path):
    cfg = tiny_cfg(path)
    rel = os.path.relpath(path, CONFIGS)
    name = os.path.basename(path)
    cascade = "cascade" in name
    assert cfg.MODEL.ROI_HEADS.NAME == (
        "DisAlignCascadeROIHeads" if cascade else "DisAlignStandardROIHeads"
    )
    stage2 = name.startswith("disalign_")
    assert (
        cfg.MODEL.DISALIGN.CALIBRATION
        == cfg.MODEL.DISALIGN.FREEZE
        == cfg.MODEL.DISALIGN.REWEIGHT
        == stage2
    )
    assert cfg.MODEL.DISALIGN.CLASSIFIER == ("cosine" if "_cos" in name else "linear")
    assert cfg.MODEL.PROPOSAL_GENERATOR.NAME == "DisAlignRPN"
    if rel.startswith("LVIS"):
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == (1230 if rel.startswith("LVISv0.5") else 1203)
        assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.0001
        assert cfg.TEST.DETECTIONS_PER_IMAGE == 300
        if stage2:  # METHOD.md: 9K iterations, LR 0.02, SGD momentum 0.9, wd 1e-4, 16 images
            s = cfg.SOLVER
            assert (s.MAX_ITER, s.BASE_LR, s.MOMENTUM, s.WEIGHT_DECAY, s.IMS_PER_BATCH) == (
                9000,
                0.02,
                0.9,
                0.0001,
                16,
            )
            assert cfg.MODEL.DISALIGN.RHO == 0.8
            assert cfg.MODEL.WEIGHTS.endswith("model_final.pth")
            # the authors' LVIS v1 stage-2 config: one decay at 8K, evaluation every 3K,
            # scales 640..800 (max 1333) with flip
            assert (tuple(s.STEPS), cfg.TEST.EVAL_PERIOD) == ((8000,), 3000)
            i = cfg.INPUT
            assert tuple(i.MIN_SIZE_TRAIN) == (640, 672, 704, 736, 768, 800)
            assert (i.MAX_SIZE_TRAIN, i.RANDOM_FLIP, i.MIN_SIZE_TEST) == (1333, "horizontal", 800)


@pytest.mark.parametrize(
    "path", [p for p in LEAVES if "quick_schedules" in p or "demo" in p], ids=os.path.basename
)
def test_cpu_configs_build(path):
    cfg = tiny_cfg(path, ["MODEL.DISALIGN.REWEIGHT", "False"])  # no dataset needed to build
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def _key_paths(node, prefix=()):
    """Dotted key paths of the leaves of a YAML mapping."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _key_paths(value, prefix + (key,))
        else:
            yield prefix + (key,)


def _value(cfg, path):
    for key in path:
        cfg = cfg[key]
    return cfg


@pytest.mark.parametrize("path", ALL, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_no_key_repeats_its_base(path):
    """A key a YAML sets has another value than its _BASE_ gives (the Base configs: than
    detectron2's and add_disalign_config's defaults, except the keys of detectron2's own
    Base-RCNN-FPN.yaml, which they repeat because it cannot be their _BASE_)."""
    with open(path) as f:
        raw = yaml.safe_load(f)
    base = raw.get("_BASE_")
    base_cfg = tiny_cfg(os.path.join(os.path.dirname(path), base)) if base else tiny_cfg(None)
    mirrored = set()
    if not base:
        with open(model_zoo.get_config_file("Base-RCNN-FPN.yaml")) as f:
            mirrored = set(_key_paths(yaml.safe_load(f)))
    cfg = tiny_cfg(path)
    repeated = [
        ".".join(p)
        for p in _key_paths(raw)
        if p != ("_BASE_",) and p not in mirrored and _value(cfg, p) == _value(base_cfg, p)
    ]
    assert not repeated, f"{path} sets keys to the value its base has: {repeated}"


def test_stage2_configs_set_only_the_stage2_recipe():
    """Every LVIS stage-2 YAML sets the same keys to the same values, besides its own paths."""
    leaves = [p for p in ALL if os.path.basename(p).startswith("disalign_") and "LVIS" in p]
    assert len(leaves) == 24
    recipes = set()
    for path in leaves:
        with open(path) as f:
            raw = yaml.safe_load(f)
        own = {("_BASE_",), ("MODEL", "WEIGHTS"), ("OUTPUT_DIR",)}
        recipes.add(tuple((p, str(_value(raw, p))) for p in _key_paths(raw) if p not in own))
    assert recipes == {
        (
            (("MODEL", "DISALIGN", "CALIBRATION"), "True"),
            (("MODEL", "DISALIGN", "REWEIGHT"), "True"),
            (("MODEL", "DISALIGN", "FREEZE"), "True"),
            (("SOLVER", "STEPS"), "(8000,)"),
            (("SOLVER", "MAX_ITER"), "9000"),
            (("SOLVER", "CHECKPOINT_PERIOD"), "3000"),
            (("TEST", "EVAL_PERIOD"), "3000"),
        )
    }

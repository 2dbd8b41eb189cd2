"""Every shipped detectron2 YAML parses into a config with the DisAlign keys, and says only what
differs from its base."""

import glob
import os

import pytest
import torch
import yaml
from det_testing import CONFIGS, tiny_cfg
from detectron2 import model_zoo
from detectron2.modeling import build_model

from disalign_core import is_calibration_key

ALL = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))
LEAVES = [p for p in ALL if not os.path.basename(p).startswith("Base-")]
# detectron2's model-zoo LVIS v0.5 Mask R-CNN models, calibrated by disalign_*_zoo.yaml
ZOO_BACKBONES = ("R_50", "R_101", "X_101_32x8d")
# Stage 1 with repeat-factor sampling (and its stage 2): the zoo's recipe for each zoo backbone,
# and the authors' RFS rows (R-50, linear and cosine, LVIS v0.5 and v1).
RFS = [f"LVISv0.5/mask_rcnn_{b}_FPN_1x_rfs.yaml" for b in ZOO_BACKBONES] + [
    "LVISv0.5/mask_rcnn_R_50_FPN_1x_cos_rfs.yaml",
    "LVISv1/mask_rcnn_R_50_FPN_1x_rfs.yaml",
    "LVISv1/mask_rcnn_R_50_FPN_1x_cos_rfs.yaml",
]
D2_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"  # what detectron2:// stands for


def test_config_tree_is_complete():
    names = {os.path.relpath(p, CONFIGS) for p in ALL}
    for version in ("LVISv0.5", "LVISv1"):
        for arch in ("mask_rcnn", "cascade_mask_rcnn"):
            for backbone in ("R_50", "R_101", "X_101_32x8d"):
                for head in ("", "_cos"):
                    stem = f"{version}/{arch}_{backbone}_FPN_1x{head}.yaml"
                    assert stem in names
                    assert stem.replace("/", "/disalign_") in names
    for stem in RFS:
        assert stem in names
        assert stem.replace("/", "/disalign_") in names
    for backbone in ZOO_BACKBONES:
        assert f"LVISv0.5/disalign_mask_rcnn_{backbone}_FPN_1x_zoo.yaml" in names


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
            assert s.REFERENCE_WORLD_SIZE == 8  # 8 GPUs x 2: scaled on other world sizes
            if name.endswith("_zoo.yaml"):  # the zoo's checkpoint, as model_zoo.py gives it
                zoo_name = "LVISv0.5-InstanceSegmentation/" + name[len("disalign_") : -9]
                url = model_zoo.get_checkpoint_url(zoo_name + ".yaml")
                assert cfg.MODEL.WEIGHTS.replace("detectron2://", D2_PREFIX) == url
                assert cfg.MODEL.WEIGHTS.startswith("detectron2://")
            else:
                assert cfg.MODEL.WEIGHTS.endswith("model_final.pth")
            # the authors' LVIS v1 stage-2 config: one decay at 8K, evaluation every 3K,
            # scales 640..800 (max 1333) with flip
            assert (tuple(s.STEPS), cfg.TEST.EVAL_PERIOD) == ((8000,), 3000)
            i = cfg.INPUT
            assert tuple(i.MIN_SIZE_TRAIN) == (640, 672, 704, 736, 768, 800)
            assert (i.MAX_SIZE_TRAIN, i.RANDOM_FLIP, i.MIN_SIZE_TEST) == (1333, "horizontal", 800)
        # repeat-factor sampling in the _rfs stage 1 (as the zoo); stage 2 samples uniformly
        rfs = name.endswith("_rfs.yaml") and not stage2
        assert cfg.DATALOADER.SAMPLER_TRAIN == (
            "RepeatFactorTrainingSampler" if rfs else "TrainingSampler"
        )


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
    """Every LVIS stage-2 YAML sets the same keys to the same values, besides its own paths;
    the _rfs ones also go back to uniform sampling, and the _zoo ones, whose _BASE_ is a
    stage-2 YAML already, set nothing but their paths."""
    leaves = [p for p in ALL if os.path.basename(p).startswith("disalign_") and "LVIS" in p]
    assert len(leaves) == 24 + len(RFS) + len(ZOO_BACKBONES)
    own = {("_BASE_",), ("MODEL", "WEIGHTS"), ("OUTPUT_DIR",)}
    recipes = set()
    for path in leaves:
        with open(path) as f:
            raw = yaml.safe_load(f)
        recipe = tuple((p, str(_value(raw, p))) for p in _key_paths(raw) if p not in own)
        if path.endswith("_zoo.yaml"):
            assert raw["_BASE_"] == os.path.basename(path).replace("_zoo", "_rfs")
            assert recipe == ()
            continue
        if path.endswith("_rfs.yaml"):
            assert (("DATALOADER", "SAMPLER_TRAIN"), "TrainingSampler") in recipe
            recipe = tuple(r for r in recipe if r[0] != ("DATALOADER", "SAMPLER_TRAIN"))
        recipes.add(recipe)
    assert recipes == {
        (
            (("MODEL", "DISALIGN", "CALIBRATION"), "True"),
            (("MODEL", "DISALIGN", "REWEIGHT"), "True"),
            (("MODEL", "DISALIGN", "FREEZE"), "True"),
            (("SOLVER", "REFERENCE_WORLD_SIZE"), "8"),
            (("SOLVER", "STEPS"), "(8000,)"),
            (("SOLVER", "MAX_ITER"), "9000"),
            (("SOLVER", "CHECKPOINT_PERIOD"), "3000"),
            (("TEST", "EVAL_PERIOD"), "3000"),
        )
    }


def _flat(cfg, prefix=""):
    """{dotted key: value} of every leaf of a config."""
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(ours, theirs):
    a, b = _flat(ours), _flat(theirs)
    assert set(a) == set(b)
    return {k for k in a if a[k] != b[k]}


# Where our configs differ from detectron2's zoo config: the names of the DisAlign components
# (same weights), and our output folder.
NAMES_ONLY = {"MODEL.ROI_HEADS.NAME", "MODEL.PROPOSAL_GENERATOR.NAME", "OUTPUT_DIR"}
# What the stage-2 recipe adds to that (the zoo checkpoint; uniform sampling; the schedule).
STAGE2_RECIPE = {
    "MODEL.WEIGHTS",
    "MODEL.DISALIGN.CALIBRATION",
    "MODEL.DISALIGN.REWEIGHT",
    "MODEL.DISALIGN.FREEZE",
    "DATALOADER.SAMPLER_TRAIN",
    "SOLVER.REFERENCE_WORLD_SIZE",
    "SOLVER.STEPS",
    "SOLVER.MAX_ITER",
    "SOLVER.CHECKPOINT_PERIOD",
    "TEST.EVAL_PERIOD",
}


@pytest.mark.parametrize("backbone", ZOO_BACKBONES)
def test_rfs_and_zoo_configs_are_the_zoo_recipe(backbone):
    """Our RFS stage 1 is detectron2's zoo config key for key (input sizes, sampler, schedule,
    architecture), apart from the DisAlign components' names; the zoo stage 2 adds only the
    stage-2 recipe."""
    zoo = tiny_cfg(
        model_zoo.get_config_file(f"LVISv0.5-InstanceSegmentation/mask_rcnn_{backbone}_FPN_1x.yaml")
    )
    stage1 = tiny_cfg(os.path.join(CONFIGS, f"LVISv0.5/mask_rcnn_{backbone}_FPN_1x_rfs.yaml"))
    assert _differences(stage1, zoo) == NAMES_ONLY
    assert (zoo.MODEL.ROI_HEADS.NAME, zoo.MODEL.PROPOSAL_GENERATOR.NAME) == (
        "StandardROIHeads",
        "RPN",
    )
    stage2 = tiny_cfg(
        os.path.join(CONFIGS, f"LVISv0.5/disalign_mask_rcnn_{backbone}_FPN_1x_zoo.yaml")
    )
    assert _differences(stage2, zoo) == NAMES_ONLY | STAGE2_RECIPE


@pytest.mark.parametrize("backbone", ZOO_BACKBONES)
def test_zoo_checkpoint_keys_are_our_stage2_model_keys(backbone):
    """A checkpoint of detectron2's zoo model (the stock config, stock components) has exactly
    the keys and shapes of our zoo stage-2 model, the calibration aside. Both are built on the
    meta device: shapes without memory or initialisation."""
    zoo_cfg = tiny_cfg(
        model_zoo.get_config_file(f"LVISv0.5-InstanceSegmentation/mask_rcnn_{backbone}_FPN_1x.yaml")
    )
    ours_cfg = tiny_cfg(
        os.path.join(CONFIGS, f"LVISv0.5/disalign_mask_rcnn_{backbone}_FPN_1x_zoo.yaml"),
        ["MODEL.DISALIGN.REWEIGHT", "False"],  # no dataset needed to build
    )
    with torch.device("meta"):
        zoo_cfg.MODEL.DEVICE = ours_cfg.MODEL.DEVICE = "meta"
        theirs = {k: tuple(v.shape) for k, v in build_model(zoo_cfg).state_dict().items()}
        ours = {k: tuple(v.shape) for k, v in build_model(ours_cfg).state_dict().items()}
    calibration = {k for k in ours if is_calibration_key(k)}
    assert calibration == {
        "roi_heads.box_predictor.calibration." + p
        for p in ("alpha", "beta", "confidence_weight", "confidence_bias")
    }
    assert {k: v for k, v in ours.items() if k not in calibration} == theirs


@pytest.mark.parametrize(
    "name",
    [
        "LVISv1/disalign_mask_rcnn_R_50_FPN_1x.yaml",
        "LVISv0.5/disalign_mask_rcnn_R_50_FPN_1x_zoo.yaml",
    ],
)
def test_stage2_batch_is_scaled_to_the_world_size(name, caplog):
    """detectron2's DefaultTrainer.__init__ (our Trainer's) runs auto_scale_workers: on 1 or 4
    processes the stage-2 recipe keeps 2 images per process and scales the LR linearly, the
    schedule inversely (the paper's images at its effective LR), and logs it; 8 is unchanged.
    Setting IMS_PER_BATCH by hand needs REFERENCE_WORLD_SIZE 0 (detectron2 refuses 2 % 8)."""
    import logging

    from detectron2.engine import DefaultTrainer

    cfg = tiny_cfg(os.path.join(CONFIGS, name))
    assert DefaultTrainer.auto_scale_workers(cfg, 8) is cfg
    for world, (batch, lr, max_iter, step, period) in {
        1: (2, 0.0025, 72000, 64000, 24000),
        4: (8, 0.01, 18000, 16000, 6000),
    }.items():
        with caplog.at_level(logging.INFO, logger="detectron2"):
            scaled = DefaultTrainer.auto_scale_workers(cfg, world)
        s = scaled.SOLVER
        assert (s.IMS_PER_BATCH, s.MAX_ITER, tuple(s.STEPS)) == (batch, max_iter, (step,))
        assert s.BASE_LR == pytest.approx(lr) and scaled.TEST.EVAL_PERIOD == period
        assert f"Auto-scaling the config to batch_size={batch}" in caplog.text
    by_hand = tiny_cfg(os.path.join(CONFIGS, name), ["SOLVER.IMS_PER_BATCH", "2"])
    with pytest.raises(AssertionError, match="REFERENCE_WORLD_SIZE"):
        DefaultTrainer.auto_scale_workers(by_hand, 1)
    off = tiny_cfg(
        os.path.join(CONFIGS, name),
        ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.REFERENCE_WORLD_SIZE", "0"],
    )
    assert DefaultTrainer.auto_scale_workers(off, 1).SOLVER.IMS_PER_BATCH == 2

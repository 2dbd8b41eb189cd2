"""Calibrating a public detectron2 checkpoint: a stock LVIS v0.5 Mask R-CNN R50-FPN, built from
detectron2's own zoo config and saved in the zoo's ``.pkl`` format, served over loopback HTTP
under the zoo's path, and calibrated by our ``disalign_mask_rcnn_R_50_FPN_1x_zoo.yaml`` through
the user's entry point (``disalign_det.engine.main``, what ``train_net.py`` runs) with
``MODEL.WEIGHTS http://127.0.0.1:PORT/...``.

Only what the CPU needs is overridden, the same for both models: the class count of the
session's generated dataset (12 instead of 1230), its 64x64 images, 50 detections per image
(not 300); and for the run, one iteration of 2 images, no evaluation. The architecture stays R50-FPN Mask R-CNN, so the checkpoint has the zoo
model's keys (a 170 MB file).
"""

import os
import re

import pytest
import torch
from det_testing import CONFIGS, NUM_CLASSES, TRAIN, VAL
from det_zoo_testing import recording, save_zoo_pkl, serve
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor, HookBase
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

from disalign_core import is_calibration_key
from disalign_det import engine
from disalign_det.calibration_stage import DisAlignCheckpointer

ZOO_YAML = os.path.join(CONFIGS, "LVISv0.5", "disalign_mask_rcnn_R_50_FPN_1x_zoo.yaml")
ZOO_CONFIG = "LVISv0.5-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
# The zoo's checkpoint path, as model_zoo.py gives it (detectron2:// is
# https://dl.fbaipublicfiles.com/detectron2/): served under the same path here.
ZOO_PATH = model_zoo.get_checkpoint_url(ZOO_CONFIG).split("dl.fbaipublicfiles.com/")[1]

# For both models: the generated data's classes and image size.
MODEL_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
    "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64",
    "TEST.DETECTIONS_PER_IMAGE", "50",
]  # fmt: skip
# For the stage-2 run only: one iteration of two images, no evaluation, no workers.
RUN_OPTS = [
    "DATASETS.TRAIN", f"('{TRAIN}',)",
    "DATASETS.TEST", "()",
    "DATALOADER.NUM_WORKERS", "0",
    "SOLVER.IMS_PER_BATCH", "2",
    # the stage-2 YAMLs scale their 16-image recipe to the processes (REFERENCE_WORLD_SIZE 8);
    # a hand-set batch turns that off
    "SOLVER.REFERENCE_WORLD_SIZE", "0",
    "SOLVER.MAX_ITER", "1",
]  # fmt: skip
# fvcore's warnings about keys that did not load
FVCORE_MISSING = "not found in the checkpoint"
FVCORE_UNEXPECTED = "not used by the model"


def stock_cfg(weights=""):
    """detectron2's own LVIS v0.5 config, stock components, plus MODEL_OPTS."""
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(ZOO_CONFIG))
    cfg.merge_from_list(MODEL_OPTS + ["MODEL.WEIGHTS", weights])
    return cfg


def stock_state_dict(seed):
    """A stock model whose frozen BatchNorm layers hold statistics of their own (left at mean 0
    / var 1, they would not show whether they were loaded): data-dependent, from one random
    image, so that the activations of the randomly initialised ResNet stay in range and the
    model predicts boxes."""
    torch.manual_seed(seed)
    model = build_model(stock_cfg()).eval()
    norms = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]

    def normalise_input(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        # + 1: channels that are (nearly) constant on one image are not blown up
        module.running_var.copy_(x.var(dim=(0, 2, 3)) + 1.0)

    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.8, 1.2)
            m.bias.normal_(std=0.1)
        hooks = [m.register_forward_pre_hook(normalise_input) for m in norms]
        images = model.preprocess_image([{"image": torch.rand(3, 64, 64) * 255}])
        model.backbone(images.tensor)
        for h in hooks:
            h.remove()
    return model.state_dict()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The stock model's file under the zoo's path in a served folder, and an empty iopath
    cache (FVCORE_CACHE) for this module."""
    root = tmp_path_factory.mktemp("zoo")
    served, cache = root / "served", root / "iopath_cache"
    state = stock_state_dict(seed=1)
    save_zoo_pkl(state, str(served / ZOO_PATH))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FVCORE_CACHE", str(cache))
        mp.setenv("no_proxy", "127.0.0.1")  # never through a proxy, if one is configured
        mp.setenv("NO_PROXY", "127.0.0.1")
        with serve(str(served)) as (port, requests):
            yield {
                "url": f"http://127.0.0.1:{port}/{ZOO_PATH}",
                "file": served / ZOO_PATH,
                "cached": cache / ZOO_PATH,
                "keys": set(state),
                "requests": requests,
            }


def predict(model, cfg, image_bgr):
    """DefaultPredictor.__call__ on a built model (BGR input, test-time resize)."""
    height, width = image_bgr.shape[:2]
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    image = resize.get_transform(image_bgr).apply_image(image_bgr)
    image = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
    with torch.no_grad():
        return model([{"image": image, "height": height, "width": width}])[0]["instances"]


class _PredictBeforeTraining(HookBase):
    """Predicts with the trainer's model after it loaded MODEL.WEIGHTS, before its first step."""

    def __init__(self, image_bgr, out):
        self.image, self.out = image_bgr, out

    def before_train(self):
        model = self.trainer.model
        model.eval()
        self.out.append(predict(model, self.trainer.cfg, self.image))
        model.train()


def test_calibrate_zoo_format_checkpoint_over_http(zoo, synth_dataset, tmp_path, monkeypatch):
    image = read_image(DatasetCatalog.get(VAL)[0]["file_name"], format="BGR")
    before_first_step = []
    build_hooks = engine.Trainer.build_hooks
    monkeypatch.setattr(
        engine.Trainer,
        "build_hooks",
        lambda self: build_hooks(self) + [_PredictBeforeTraining(image, before_first_step)],
    )
    argv = ["--config-file", ZOO_YAML, *MODEL_OPTS, *RUN_OPTS,
            "MODEL.WEIGHTS", zoo["url"], "OUTPUT_DIR", str(tmp_path / "out")]  # fmt: skip
    with recording("disalign_det", "fvcore", "detectron2") as log:
        engine.main(engine.argument_parser().parse_args(argv))

    # the URL is logged with the local file it resolved to, in iopath's cache under the URL's
    # path, and the advice for a stale cache
    assert zoo["requests"] == ["/" + ZOO_PATH]
    cached = str(zoo["cached"])
    assert zoo["cached"].read_bytes() == zoo["file"].read_bytes()
    url_lines = [m for m in log.lines() if m.startswith(f"MODEL.WEIGHTS {zoo['url']} is a URL")]
    assert len(url_lines) == 1, log.text()
    assert f"reading the local file {cached} ({os.path.getsize(cached)} bytes, modified" in (
        url_lines[0]
    )
    assert "keys files by the URL's path, not its host" in url_lines[0]
    assert "delete that file to download it again" in url_lines[0]

    # exactly the calibration is new; nothing else missing or unexpected
    loaded = [m for m in log.lines() if m.startswith("DisAlign stage 2: loaded all")]
    assert len(loaded) == 1, log.text()
    assert f"from {zoo['url']} (local file {cached}) (MODEL.WEIGHTS)" in loaded[0]
    assert "not needed from the checkpoint" not in loaded[0]
    new = set(
        re.search(r"new, at the identity \(alpha = beta = 0\): (.*)$", loaded[0])[1].split(", ")
    )
    model_final = torch.load(tmp_path / "out" / "model_final.pth", weights_only=False)["model"]
    calibration = {k for k in model_final if is_calibration_key(k)}
    assert new == calibration == set(model_final) - zoo["keys"]
    assert len(calibration) == 4  # alpha, beta and the confidence's weight and bias
    assert f"loaded all {len(zoo['keys'])} parameters and buffers" in loaded[0]
    assert not [m for m in log.lines() if FVCORE_MISSING in m or FVCORE_UNEXPECTED in m]

    # identity start: before its first step the stage-2 model predicts what the stock model
    # predicts (stock detectron2 reading the same file)
    stock = DefaultPredictor(stock_cfg(str(zoo["file"])))(image)["instances"]
    (calibrated,) = before_first_step
    assert len(stock) > 0
    assert torch.equal(stock.pred_boxes.tensor, calibrated.pred_boxes.tensor)
    assert torch.equal(stock.scores, calibrated.scores)
    assert torch.equal(stock.pred_classes, calibrated.pred_classes)
    assert torch.equal(stock.pred_masks, calibrated.pred_masks)


def test_same_path_from_another_server_is_the_cached_file(zoo, tmp_path):
    """iopath's cache keys a download by the URL's path, not its host: another server's file of
    the same path is not downloaded, and the log names the cached file that is used instead.
    Deleting that file downloads the new one."""
    other = tmp_path / "other_server"
    save_zoo_pkl(stock_state_dict(seed=2), str(other / ZOO_PATH), author="another server")
    assert (other / ZOO_PATH).read_bytes() != zoo["file"].read_bytes()
    cfg = engine.setup(
        engine.argument_parser().parse_args(
            ["--config-file", ZOO_YAML, *MODEL_OPTS, "MODEL.DISALIGN.REWEIGHT", "False",
             "OUTPUT_DIR", str(tmp_path / "out")]
        )
    )  # fmt: skip
    model = engine.Trainer.build_model(cfg)
    checkpointer = DisAlignCheckpointer(model, calibration_stage=True)
    probe = "backbone.bottom_up.stem.conv1.weight"
    with serve(str(other)) as (port, requests):
        url = f"http://127.0.0.1:{port}/{ZOO_PATH}"
        # the first server's file is in the cache (downloaded now if this test runs alone)
        checkpointer.resume_or_load(zoo["url"], resume=False)
        cached = zoo["cached"]
        assert cached.read_bytes() == zoo["file"].read_bytes()
        with recording("disalign_det") as log:
            checkpointer.resume_or_load(url, resume=False)
        assert requests == []  # not even asked
        (line,) = [m for m in log.lines() if m.startswith(f"MODEL.WEIGHTS {url} is a URL")]
        assert f"reading the local file {cached} ({os.path.getsize(cached)} bytes" in line
        assert "delete that file to download it again" in line
        from_first = model.state_dict()[probe].clone()

        cached.unlink()  # as the log says
        with recording("disalign_det") as log:
            checkpointer.resume_or_load(url, resume=False)
        assert requests == ["/" + ZOO_PATH]
        assert cached.read_bytes() == (other / ZOO_PATH).read_bytes()
        assert not torch.equal(model.state_dict()[probe], from_first)

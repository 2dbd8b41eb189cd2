"""Stage 2 from a public mmseg checkpoint: the model zoo's format (mmseg 0.x: ``state_dict`` and
``meta`` with CLASSES and PALETTE, torch's legacy serialization), served over HTTP on
127.0.0.1, named by ``model.stage1_checkpoint`` and loaded by mmseg's stock tools/train.py under
torch's default ``weights_only``. The log lists exactly the calibration as new and names the
local file the URL resolved to; the stage-2 model predicts what the stock model predicts."""

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from PIL import Image
from seg_testing import MMSEG_TOOLS, REPO

import disalign_mmengine.calibration_stage as calibration_stage
from disalign_core import write_class_frequencies
from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic

TINY = os.path.join(REPO, "configs", "mmseg", "tiny")
STAGE1 = os.path.join(TINY, "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
STAGE2 = os.path.join(TINY, "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py")
CALIBRATION = {
    f"decode_head.calibration.{n}"
    for n in ("alpha", "beta", "confidence_weight", "confidence_bias")
}
# The model zoo's naming: <config>_<date>_<time>-<hash>.pth
PUBLIC_NAME = "fcn_r18-tiny-d4_64x64_600_synthetic_20200615_100713-4edbc3b4.pth"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("public_ckpt") / "data")
    spec = SyntheticLongTailSpec(num_train=8, num_val=2, tail_train_images=1)
    meta = generate_ade20k_synthetic(root, spec, seed=5)
    counts = [100.0 - i for i in range(spec.num_classes)]
    write_class_frequencies(os.path.join(root, "pixel_frequencies.json"), counts, meta["classes"])
    return root, meta


def stock_fcn(data_root, monkeypatch):
    """mmseg's own EncoderDecoder + FCNHead of the tiny stage-1 config, no tensor at its
    default value (BatchNorm statistics included)."""
    monkeypatch.setenv("DISALIGN_SEG_DATA", data_root)
    model = MODELS.build(Config.fromfile(STAGE1).model)
    model.init_weights()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.mul_(1 + 0.1 * torch.rand_like(t)).add_(0.01 * torch.rand_like(t))
    return model.eval()


def save_mmseg_0x_checkpoint(model, meta, path):
    """As mmseg 0.x's model zoo: mmcv 1.x's save_checkpoint (``meta`` with versions, time,
    iteration, the dataset's CLASSES and PALETTE, the config text) after publish_model.py
    removed the optimizer; torch 1.5's legacy (non-zip) serialization."""
    checkpoint = {
        "meta": {
            "env_info": "sys.platform: linux\nPython: 3.7.7\nPyTorch: 1.5.0",
            "seed": 0,
            "exp_name": "fcn_r18-tiny-d4_64x64_600_synthetic.py",
            "mmseg_version": "0.5.0+3f8b5b3",
            "config": "model = dict(type='EncoderDecoder', ...)",
            "CLASSES": tuple(meta["classes"]),
            "PALETTE": [list(map(int, c)) for c in meta["palette"]],
            "mmcv_version": "1.0rc0",
            "time": "Mon Jun 15 10:07:13 2020",
            "epoch": 1,
            "iter": 600,
        },
        "state_dict": model.state_dict(),  # an OrderedDict with _metadata (module versions)
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)


@contextmanager
def serve(directory):
    """A static file server on 127.0.0.1 (ephemeral port); yields (base URL, requested paths)."""
    requested = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def train(args, env):
    """mmseg's stock tools/train.py, torch's weights_only default (no override in the env)."""
    full_env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    full_env.update(PYTHONPATH=REPO, **env)
    proc = subprocess.run(
        [sys.executable, os.path.join(MMSEG_TOOLS, "train.py"), *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_stage2_from_a_public_checkpoint_over_http(data, tmp_path, monkeypatch):
    root, meta = data
    stock = stock_fcn(root, monkeypatch)
    served = tmp_path / "served"
    served.mkdir()
    save_mmseg_0x_checkpoint(stock, meta, served / PUBLIC_NAME)
    assert not zipfile.is_zipfile(served / PUBLIC_NAME)  # torch < 1.6's format, as in 2020
    torch_home = tmp_path / "torch_home"
    cached = torch_home / "hub" / "checkpoints" / PUBLIC_NAME

    with serve(served) as (base, requested):
        url = f"{base}/{PUBLIC_NAME}"
        work = tmp_path / "stage2"
        iters = ["train_cfg.max_iters=2", "train_cfg.val_interval=2", "param_scheduler.0.end=2"]
        rc, out = train(
            [STAGE2, "--work-dir", str(work), "--cfg-options", f"model.stage1_checkpoint={url}"]
            + iters
            + ["default_hooks.checkpoint.interval=2", "train_dataloader.batch_size=2"],
            env=dict(DISALIGN_SEG_DATA=root, TORCH_HOME=str(torch_home)),
        )
        assert rc == 0, out[-6000:]
        assert requested == [f"/{PUBLIC_NAME}"]

        # The local file the URL resolved to, and the cache caveat.
        size = cached.stat().st_size
        assert f"resolved to the local file {cached} ({size} bytes, modified " in out
        assert "keys downloads by file name only" in out
        # Exactly the calibration is new; every other tensor of the model came from the file.
        fits = re.search(
            r"fits the model: (\d+) tensors loaded from it, everything but the calibration; "
            r"new, at their start \(.*?\): (.*)",
            out,
        )
        assert fits, out[-6000:]
        assert set(fits.group(2).strip().split(", ")) == CALIBRATION
        assert int(fits.group(1)) == len(stock.state_dict())
        for generic in ("do not match exactly", "missing keys", "unexpected key", "size mismatch"):
            assert generic not in out
        s2 = torch.load(work / "iter_2.pth", map_location="cpu")["state_dict"]
        for key, value in stock.state_dict().items():  # landed and stayed frozen
            assert torch.equal(s2[key], value), key

        # In-process, through the same init_weights. The cache keys on the file name only:
        # another URL ending in the same name is not requested (the caveat the log states).
        monkeypatch.setenv("TORCH_HOME", str(torch_home))
        cfg = Config.fromfile(STAGE2)
        cfg.model.stage1_checkpoint = f"{base}/another/folder/{PUBLIC_NAME}"
        stage2 = MODELS.build(cfg.model)
        stage2.init_weights()
        assert requested == [f"/{PUBLIC_NAME}"]
    stage2.eval()
    pre = cfg.model.data_preprocessor
    img = np.asarray(Image.open(os.path.join(root, "images", "validation", "v00000.jpg")))
    x = torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1)[None].float()  # BGR -> RGB
    x = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    x = torch.cat([x, torch.randn(1, 3, 64, 64)])
    with torch.no_grad():
        logits, expected = stage2(x, mode="tensor"), stock(x, mode="tensor")
    assert torch.equal(logits, expected)
    assert torch.equal(logits.argmax(1), expected.argmax(1))


def test_ddp_prefix_and_missing_batchnorm_counters(data, tmp_path, monkeypatch):
    """A checkpoint saved from a DDP-wrapped model (``module.`` prefixes) whose BatchNorms lack
    ``num_batches_tracked`` (only a counter, unused by frozen BatchNorm) still fits."""
    root, _ = data
    stock = stock_fcn(root, monkeypatch)
    state = stock.state_dict()
    trimmed = OrderedDict(
        (f"module.{k}", v) for k, v in state.items() if not k.endswith("num_batches_tracked")
    )
    trimmed._metadata = OrderedDict(  # module versions as torch saves them (BatchNorm: 2)
        (f"module.{k}" if k else "module", v) for k, v in state._metadata.items()
    )
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": trimmed, "meta": {}}, path)
    logged = []
    monkeypatch.setattr(calibration_stage, "print_log", lambda msg, **kw: logged.append(msg))
    cfg = Config.fromfile(STAGE2)
    cfg.model.stage1_checkpoint = str(path)
    stage2 = MODELS.build(cfg.model)
    stage2.init_weights()
    counters = sum(k.endswith("num_batches_tracked") for k in state)
    fits = [m for m in logged if "fits the model" in m]
    assert len(fits) == 1
    assert f"{counters} BatchNorm num_batches_tracked counters absent from it" in fits[0]
    assert set(re.split(r"new, at their start \(.*?\): ", fits[0])[1].split(", ")) == CALIBRATION
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(stage2.state_dict()[key], value), key


def test_a_url_that_cannot_be_downloaded(data, tmp_path, monkeypatch):
    root, _ = data
    monkeypatch.setenv("DISALIGN_SEG_DATA", root)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cfg = Config.fromfile(STAGE2)
    with serve(tmp_path) as (base, requested):
        cfg.model.stage1_checkpoint = f"{base}/no_such_file.pth"
        with pytest.raises(
            RuntimeError,
            match=r"cannot download the checkpoint http://127.0.0.1:\d+/no_such_file.pth "
            r"\(model.stage1_checkpoint\): HTTPError.*404.*set model.stage1_checkpoint to its "
            r"local path",
        ):
            MODELS.build(cfg.model).init_weights()
    assert requested == ["/no_such_file.pth"]
    assert not (tmp_path / "torch_home" / "hub" / "checkpoints" / "no_such_file.pth").exists()

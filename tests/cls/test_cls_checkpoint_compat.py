"""Importing disalign_cls lets mmengine checkpoints load under torch's weights_only default
(disalign_seg's allow-list, loaded without importing MMSegmentation)."""

import subprocess
import sys

from cls_testing import REPO

SCRIPT = """
import sys, tempfile, os
import numpy as np
import torch
from mmengine.logging import HistoryBuffer

path = os.path.join(tempfile.mkdtemp(), "ckpt.pth")
buf = HistoryBuffer()
buf.update(1.5)
torch.save({"message_hub": {"loss": buf}, "meta": {"seed": np.int64(3)}}, path)
try:
    torch.load(path)
    print("refused: no")
except Exception as e:
    print("refused: yes", type(e).__name__)
import disalign_cls  # noqa: F401
ckpt = torch.load(path)
print("loaded", float(ckpt["message_hub"]["loss"].current()), int(ckpt["meta"]["seed"]))
print("mmseg imported:", "mmseg" in sys.modules)
"""


def test_mmengine_checkpoint_loads_after_import_without_mmseg():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "refused: yes" in out  # torch's default refuses it before the plugin is imported
    assert "loaded 1.5 3" in out
    assert "mmseg imported: False" in out

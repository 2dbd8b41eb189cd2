import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from seg_testing import REPO

# Saves a checkpoint holding what mmengine's runner saves in "meta" (MessageHub state with
# HistoryBuffers, numpy scalars and arrays), then loads it with torch.load's default
# (weights_only=True under torch >= 2.6) with or without importing disalign_seg first.
SCRIPT = """
import sys, numpy as np, torch
from mmengine.logging import MessageHub
if sys.argv[2] == 'plugin':
    import disalign_seg
hub = MessageHub.get_instance('t')
hub.update_scalar('train/loss', 1.5)
hub.update_scalar('val/mIoU', np.float64(42.0))
hub.update_info('iter', 7)
torch.save({'meta': {'message_hub': hub.state_dict(), 'seed': np.int64(3),
                     'hist': np.arange(4, dtype=np.float32)},
            'state_dict': {'w': torch.ones(2)}}, sys.argv[1])
ck = torch.load(sys.argv[1])
assert ck['meta']['message_hub']['log_scalars']['val/mIoU'].current() == 42.0
print('LOADED')
"""


def _run(path, mode):
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, path, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )


def test_mmengine_checkpoint_needs_and_gets_the_allowlist(tmp_path):
    without = _run(str(tmp_path / "a.pth"), "none")
    # The problem exists (else the plugin's fix would be untested): torch refuses the file.
    assert without.returncode != 0 and "weights_only" in without.stderr
    with_plugin = _run(str(tmp_path / "b.pth"), "plugin")
    assert with_plugin.returncode == 0, with_plugin.stderr
    assert "LOADED" in with_plugin.stdout


def test_getattr_stand_in_only_serves_history_buffer_methods(tmp_path):
    import disalign_seg  # noqa: F401  installs the allow-list in this process

    class Evil:
        def __reduce__(self):
            return (getattr, (np.ndarray, "tofile"))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(pickle.UnpicklingError, match="admits only the statistics methods"):
        torch.load(path)
    hub = MessageHub.get_instance("compat")
    hub.update_scalar("loss", 1.0)
    ok = tmp_path / "ok.pth"
    torch.save(hub.state_dict(), ok)
    loaded = torch.load(ok)
    assert isinstance(loaded["log_scalars"]["loss"], HistoryBuffer)

"""Importing an OpenMMLab plugin changes nothing in the process but the one documented function.

``disalign_seg`` and ``disalign_cls`` register their components in their framework's registries
and call ``disalign_mmengine.allow_mmengine_checkpoints`` (torch's ``weights_only`` allow-list).
Nothing else may change: no attribute of an already-imported torch / mmengine / mmcv /
framework module is replaced or removed, mmengine's checkpoint loaders stay its own, and the
safe globals grow by exactly ``mmengine_checkpoint_safe_globals()``. (The detectron2 plugin's
import is checked in tests/det/test_det_train_net.py.) Each plugin is imported in a fresh process.
"""

import json
import subprocess
import sys

import pytest

CHECK = r"""
import json, sys, types
import torch, torch.serialization
import mmengine, mmengine.runner, mmengine.runner.checkpoint, mmengine.dataset, mmengine.hooks
import mmcv
import {framework}.models, {framework}.datasets, {framework}.evaluation
from mmengine.runner.checkpoint import CheckpointLoader

PREFIXES = ("torch", "mmengine", "mmcv", "{framework}", "numpy")
# where add_safe_globals keeps the allow-list (checked below through get_safe_globals)
ALLOW_LIST = "torch._weights_only_unpickler._marked_safe_globals_set"

def snapshot():
    out = {{}}
    for name, module in list(sys.modules.items()):
        if module is None or not name.split(".")[0] in PREFIXES:
            continue
        try:
            items = dict(vars(module))
        except TypeError:
            continue
        out[name] = {{k: id(v) for k, v in items.items() if not k.startswith("__")}}
    return out

def safe_globals():
    get = getattr(torch.serialization, "get_safe_globals", None)
    return [repr(g) for g in get()] if get else []

before = snapshot()
schemes = dict(CheckpointLoader._schemes)
globals_before = safe_globals()
load = torch.load

import {plugin}
from disalign_mmengine import mmengine_checkpoint_safe_globals

after = snapshot()
changed = []
for name, attrs in before.items():
    module = sys.modules[name]
    now = after.get(name, {{}})
    for key, ident in attrs.items():
        if now.get(key) != ident and f"{{name}}.{{key}}" != ALLOW_LIST:
            changed.append(f"{{name}}.{{key}}")
    for key in set(now) - set(attrs):
        if not isinstance(getattr(module, key), types.ModuleType):
            changed.append(f"{{name}}.{{key}} (new)")
added = [g for g in safe_globals() if g not in globals_before]
print(json.dumps(dict(
    changed=sorted(changed),
    schemes_same=dict(CheckpointLoader._schemes) == schemes,
    load_same=torch.load is load,
    added=added,
    expected=[repr(g) for g in mmengine_checkpoint_safe_globals()],
)))
"""


@pytest.mark.parametrize(
    "plugin, framework", [("disalign_seg", "mmseg"), ("disalign_cls", "mmpretrain")]
)
def test_importing_the_plugin_changes_only_the_checkpoint_allow_list(plugin, framework):
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(plugin=plugin, framework=framework)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["changed"] == []
    assert result["schemes_same"], "mmengine's CheckpointLoader schemes were replaced"
    assert result["load_same"], "torch.load was replaced"
    assert sorted(result["added"]) == sorted(result["expected"])

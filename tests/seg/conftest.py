"""Shared fixture of the MMSegmentation plugin tests: mmseg's default scope and a fixed seed."""

import pytest
import seg_testing  # noqa: F401  registers mmseg's and the plugin's components
import torch
from mmengine.registry import init_default_scope


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope("mmseg")
    torch.manual_seed(0)
    yield

"""Shared fixture of the MMPretrain plugin tests: MMPretrain's default scope and a fixed seed."""

import cls_testing  # noqa: F401  registers MMPretrain's and the plugin's components
import pytest
import torch
from mmengine.registry import init_default_scope


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    init_default_scope("mmpretrain")
    torch.manual_seed(0)
    yield

"""DisAlign plugins for detectron2, MMSegmentation and MMPretrain.

The full, pinned stack (torch, mmcv with compiled ops, detectron2, ...) is installed by
``make setup`` (tools/setup_env.sh); the requirements here are the loose ones a user who
already has the frameworks needs.
"""

from setuptools import find_packages, setup

setup(
    name="disalign",
    version="0.1.0",
    description=(
        "DisAlign (CVPR 2021) distribution calibration as detectron2, MMSegmentation and "
        "MMPretrain plugins"
    ),
    packages=find_packages(
        include=[
            "disalign_core*",
            "disalign_det*",
            "disalign_seg*",
            "disalign_cls*",
            # shared by the OpenMMLab plugins (mmengine checkpoints, the calibration stage)
            "disalign_mmengine*",
            # demo/test scaffolding (generated data, tiny CPU models); no plugin imports it
            "disalign_demo*",
        ]
    ),
    python_requires=">=3.9",
    install_requires=["torch>=1.10", "numpy"],
    extras_require={
        # detectron2 itself is not on PyPI: install it from its git repository first.
        "det": ["fvcore", "pycocotools", "lvis", "matplotlib", "tqdm"],
        "seg": ["mmcv>=2.0.0rc4,<2.2.0", "mmengine>=0.10", "mmsegmentation>=1.0,<2", "tqdm"],
        "cls": ["mmcv>=2.0.0,<2.4.0", "mmengine>=0.10,<1.0", "mmpretrain>=1.0,<2"],
        "dev": ["pytest", "matplotlib"],
    },
)

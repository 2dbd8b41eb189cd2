"""MMSegmentation demo scaffolding: a seeded long-tailed semantic segmentation data set in
ADE20K's layout, learnable on a CPU in minutes.

Framework-light (numpy and PIL only): importing it imports neither mmseg nor mmengine. The
configs under ``configs/mmseg/tiny/`` read the data from ``$DISALIGN_SEG_DATA``;
``tools/demo/seg_demo.py`` generates it there with ``generate_ade20k_synthetic``.
"""

from .synthetic import DEFAULT_SPEC, SyntheticLongTailSpec, class_palette, generate_ade20k_synthetic

__all__ = [
    "DEFAULT_SPEC",
    "SyntheticLongTailSpec",
    "class_palette",
    "generate_ade20k_synthetic",
]

"""MMPretrain demo scaffolding: a seeded long-tailed classification data set.

Framework-light (numpy and PIL only): importing it imports neither mmpretrain nor mmengine. The
configs under ``configs/mmpretrain/tiny/`` read the data from ``$DISALIGN_CLS_DATA``;
``tools/demo/cls_demo.py`` generates it there with ``generate_cls_synthetic``.
"""

from .synthetic import (
    COLOURS,
    SHAPES,
    TRAIN_COUNTS,
    class_table,
    draw_image,
    generate_cls_synthetic,
)

__all__ = [
    "COLOURS",
    "SHAPES",
    "TRAIN_COUNTS",
    "class_table",
    "draw_image",
    "generate_cls_synthetic",
]

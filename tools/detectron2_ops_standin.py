"""DisAlign project's stand-in for detectron2's compiled operators (``detectron2._C``).

Written into the installed detectron2 by ``tools/setup_env.sh`` when detectron2 could not be
built from its git repository (no compiler-visible sources on the package registries). It is
not detectron2 code.

detectron2 imports ``_C`` at import time, but Mask R-CNN and Cascade R-CNN with FPN use
torchvision's RoIAlign and NMS and never call it. The three functions that ``collect_env_info``
asks for answer plainly; every compiled operator (deformable conv, rotated boxes, fast COCO
eval, ...) raises an ImportError that names this file.
"""

DISALIGN_STANDIN = True


def get_compiler_version() -> str:
    return "not compiled (DisAlign stand-in for detectron2._C)"


def get_cuda_version() -> str:
    return "not compiled"


def has_cuda() -> bool:
    return False


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(
        f"detectron2._C.{name} is a compiled operator, and this detectron2 has no compiled "
        "operators: it was installed from the registry package sal-detectron2 with the DisAlign "
        "stand-in (see docs/known_limits.md). Build detectron2 from its git "
        "repository to use it."
    )

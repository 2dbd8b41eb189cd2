#!/usr/bin/env python
"""Every shipped LVIS, ADE20K and long-tail classification config family, run at full size:
generated data, stage 1 -> checkpoint -> stage 2 -> the config's evaluator, and the cost of
stage 2 against stage 1.

    python benchmarks/full_size_configs.py --out output/full_size [--family NAME ...]

The entry point of the ``benchmarks/full_size`` package (its docstring and ``--help`` say what
it runs and what differs from the shipped configs). The package re-invokes this file with
``--worker`` for each step that needs a fresh process.
"""
import os
import sys

# benchmarks/ is a folder of scripts, not an installed package: put it on sys.path (Python does
# so for a script run directly, not for this file loaded by path) so that the full_size package
# and its sibling module common import as top-level names.
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from full_size.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

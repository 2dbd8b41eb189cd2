"""Demo and test scaffolding of the DisAlign plugins: generated long-tailed data sets, tiny
CPU models. Not needed to use DisAlign on real data.

Each framework has its own subpackage (``disalign_demo.det`` for detectron2), imported
explicitly; importing ``disalign_demo`` itself imports no framework.
"""

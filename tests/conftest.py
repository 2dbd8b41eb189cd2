"""Test-suite root. Its presence puts ``tests/`` on ``sys.path`` (pytest's default "prepend"
import mode), so the framework test folders share ``mmengine_ddp_testing`` (the gloo DDP
harness of the MMSegmentation and MMPretrain tests), which ships to no user."""

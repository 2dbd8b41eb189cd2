"""Helpers of the public-checkpoint tests: files in the format of detectron2's model zoo, served
over loopback HTTP.

A zoo checkpoint (``detectron2://.../model_final_*.pkl``) is a pickle of
``{"model": {name: numpy array}, "__author__": ...}``: ``DetectionCheckpointer._load_file``
returns such a dict as it is (a ``.pkl`` without ``__author__`` would be read as a Caffe2 file
and renamed by heuristics).
"""

import contextlib
import functools
import os
import pickle
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, List, Tuple

import numpy as np
import torch

ZOO_AUTHOR = "Detectron2 Model Zoo"


def save_zoo_pkl(state_dict: Dict[str, torch.Tensor], path: str, author: str = ZOO_AUTHOR):
    """Write ``state_dict`` as the zoo writes its ``.pkl`` files (numpy arrays)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model = {k: v.detach().cpu().numpy() for k, v in state_dict.items()}
    assert all(isinstance(v, np.ndarray) for v in model.values())
    with open(path, "wb") as f:
        pickle.dump({"model": model, "__author__": author}, f)


class _QuietHandler(SimpleHTTPRequestHandler):
    requests: List[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # no lines on stderr per request
        pass


@contextlib.contextmanager
def serve(directory: str) -> Iterator[Tuple[int, List[str]]]:
    """Serve ``directory`` on 127.0.0.1 at an ephemeral port, in a thread.

    Yields:
        (port, the paths requested so far); the server is shut down on exit.
    """
    requests: List[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Records(list):
    """Messages of the loggers it is attached to (detectron2's and fvcore's loggers do not
    propagate to the root logger once detectron2's setup_logger ran, so caplog misses them)."""

    def lines(self, level=0) -> List[str]:
        return [r.getMessage() for r in self if r.levelno >= level]

    def text(self) -> str:
        return "\n".join(self.lines())


@contextlib.contextmanager
def recording(*names: str) -> Iterator[Records]:
    """Record INFO and above of the loggers ``names`` (and their children)."""
    import logging

    records = Records()

    class _Handler(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = _Handler(logging.INFO)
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield records
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)

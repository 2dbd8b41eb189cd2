#!/usr/bin/env bash
# Creates (or confirms) the project's virtual environment in .venv with the pinned stack of
# requirements/pins.txt, detectron2 and this project in editable mode.
#
# Re-running is quick and changes nothing: a stamp in the venv records a hash of the pins and
# of this script; when it matches, nothing is installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DISALIGN_VENV:-$ROOT/.venv}"
PINS="$ROOT/requirements/pins.txt"
STANDIN="$ROOT/tools/detectron2_ops_standin.py"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.disalign-setup-stamp"

want_hash="$(cat "$PINS" "${BASH_SOURCE[0]}" "$STANDIN" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_hash" ]]; then
  echo "[setup] $VENV is up to date with requirements/pins.txt; nothing to do."
  exit 0
fi

start=$(date +%s)
log() { echo "[setup $(( $(date +%s) - start ))s] $*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)

pin() {  # the pinned requirement line for a package name
  grep -E "^$1[=<>!~]" "$PINS" | head -n 1
}

log "phase 1/3: torch, numpy, MMSegmentation, MMPretrain, detectron2's runtime needs (pins.txt)"
grep -vE '^(mmcv|sal-detectron2)[=<>!~]' "$PINS" | grep -vE '^\s*(#|$)' > "$VENV/.phase1.txt"
"${PIP[@]}" -r "$VENV/.phase1.txt"

if "$PY" -c "import mmcv, mmcv._ext" 2>/dev/null && \
   [[ "$("$PY" -c 'import mmcv; print(mmcv.__version__)')" == "$(pin mmcv | cut -d= -f3)" ]]; then
  log "phase 2/3: $(pin mmcv) with compiled ops already installed"
else
  log "phase 2/3: $(pin mmcv) with its compiled CPU ops (first build ~11 min on 2 cores; pip caches the wheel)"
  MMCV_WITH_OPS=1 MAX_JOBS="$(nproc)" "${PIP[@]}" --no-build-isolation "$(pin mmcv)"
  "$PY" -c "import mmcv._ext" || { echo "[setup] mmcv was installed without its compiled ops" >&2; exit 1; }
fi

log "phase 3/3: detectron2"
if "$PY" -c "import detectron2" 2>/dev/null; then
  log "detectron2 already importable: $("$PY" -c 'import detectron2; print(detectron2.__file__)')"
  d2_c="$("$PY" -c 'import os, detectron2; print(os.path.join(os.path.dirname(detectron2.__file__), "_C.py"))')"
  if [[ -f "$d2_c" ]] && ! cmp -s "$STANDIN" "$d2_c"; then
    log "refreshing the stand-in $d2_c"
    cp "$STANDIN" "$d2_c"
  fi
else
  d2_git="$(grep -E '^# DETECTRON2_GIT=' "$PINS" | cut -d= -f2-)"
  repo_url="${d2_git#git+}"; repo_url="${repo_url%@*}"
  if timeout 20 git ls-remote --exit-code "$repo_url" HEAD >/dev/null 2>&1; then
    log "git host reachable: building detectron2 from $d2_git"
    "${PIP[@]}" --no-build-isolation "$d2_git"
  else
    log "git host not reachable: unpacking $(pin sal-detectron2) (detectron2's Python sources)"
    tmp="$(mktemp -d)"
    "$PY" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.10 -d "$tmp" "$(pin sal-detectron2)" >/dev/null
    "$PY" -m zipfile -e "$tmp"/*.whl "$tmp/unpacked"
    site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    rm -rf "$site/detectron2"
    cp -r "$tmp/unpacked/detectron2" "$site/detectron2"
    # The wheel's compiled operators are built for CPython 3.10 + CUDA: replace them with the
    # project's stand-in (raises a clear ImportError if a compiled operator is ever used).
    rm -f "$site"/detectron2/_C*.so
    cp "$STANDIN" "$site/detectron2/_C.py"
    rm -rf "$tmp"
  fi
fi

log "installing this project in editable mode"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

log "checking the installed requirements (pip check) and that the stack imports"
# pip check knows nothing of detectron2 (unpacked, no metadata) and the editable project's
# loose extras; any conflict among the pinned packages themselves fails the setup here.
"$PY" -m pip check
"$PY" - <<'PYCHECK'
import torch, torchvision, numpy, mmcv, mmcv._ext, mmengine, mmseg, mmpretrain, detectron2, lvis, pycocotools
import mmseg.models, mmpretrain.models, detectron2.modeling, torchvision.ops
import disalign_core, disalign_mmengine, disalign_det, disalign_seg, disalign_cls, disalign_demo.det, disalign_demo.seg
print(f"[setup] torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}, "
      f"mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmseg {mmseg.__version__}, "
      f"mmpretrain {mmpretrain.__version__}, detectron2 {detectron2.__version__}")
PYCHECK

echo "$want_hash" > "$STAMP"
log "done: environment ready in $VENV"

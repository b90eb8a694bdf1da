#!/usr/bin/env bash
# Install sslth (editable) with what it needs; usage: bash scripts/install.sh [EXTRAS]
# e.g. `bash scripts/install.sh test` or `bash scripts/install.sh dev`.
#
# torch comes first because a bare `pip install torch` on a machine without a GPU pulls a
# multi-GB CUDA build: we take the CPU build there (a local CPU wheel when pip's find-links
# has one, else PyTorch's CPU index), and leave an existing torch alone.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"

if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "install: keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$PY" -m pip install "torch>=2.11"
else
  local_wheel=""
  for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
    for wheel in "$dir"/torch-*+cpu-*.whl; do
      [ -e "$wheel" ] && local_wheel="$wheel" && break 2
    done
  done
  if [ -n "$local_wheel" ]; then
    version=$(basename "$local_wheel" | cut -d- -f2)
    "$PY" -m pip install "torch==${version%%+*}"
  else
    "$PY" -m pip install torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi

if [ -n "$extras" ]; then
  "$PY" -m pip install -e ".[$extras]"
else
  "$PY" -m pip install -e .
fi

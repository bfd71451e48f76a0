# Sourced by scripts/build_book.sh and scripts/run_tests.sh.
# Creates (or reuses) the local virtual environment .venv and installs requirements.txt,
# torch first so that pip takes the pinned CPU build instead of gigabytes of CUDA packages.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ ! -x .venv/bin/python ]; then
  PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
  if [ -z "$PYTHON" ]; then
    echo "error: no python3 found; install Python 3.11 first" >&2
    exit 1
  fi
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "error: $PYTHON is $("$PYTHON" --version 2>&1); this book needs Python >= 3.10 (3.11 recommended)" >&2
    exit 1
  fi
  echo "Creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv
fi

STAMP=.venv/.installed-requirements
WANT="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  TORCH_PIN="$(grep -E '^torch==' requirements.txt)"
  echo "Installing $TORCH_PIN (CPU build) first, then requirements.txt"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$TORCH_PIN"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$WANT" > "$STAMP"
fi

export PATH="$ROOT/.venv/bin:$PATH"
# Small networks on few cores: one thread is far faster (see book/setup.md).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
# No MPLBACKEND here: Jupyter kernels must keep their inline backend, or the book has no figures.
unset MPLBACKEND
export PYDEVD_DISABLE_FILE_VALIDATION=1

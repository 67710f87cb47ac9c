#!/usr/bin/env bash
# Installs LP-LLM and what it needs, on a fresh machine or again on a set-up one (then it only checks).
#   bash scripts/install.sh          # the package, training and evaluation
#   bash scripts/install.sh test     # the same plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python -m pip --version >/dev/null

# A plain `torch` requirement on a machine with no torch pulls a multi-GB CUDA build: take the CPU build first,
# unless a torch is already installed (a GPU user's own build is kept).
if ! python -c "import torch" >/dev/null 2>&1; then
    python -m pip install --quiet "torch==2.13.0"
fi

if [ -n "$extras" ]; then
    python -m pip install --quiet -e ".[$extras]"
else
    python -m pip install --quiet -e .
fi
# Fonts for synthetic plates (Chinese province characters among them), from Debian's archive when missing.
bash dataset_scripts/install_fonts.sh

python -c "import torch, transformers, trl, peft, datasets; print(f'torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}, datasets {datasets.__version__}')"

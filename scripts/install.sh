#!/usr/bin/env bash
# Installs LP-LLM and what it needs, on a fresh machine or again on a set-up one (then it only checks).
#   bash scripts/install.sh          # the package, training and evaluation
#   bash scripts/install.sh test     # the same plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
torch_version="2.13.0"
torch_cpu_index="https://download.pytorch.org/whl/cpu"
python -m pip --version >/dev/null

# pyproject.toml asks for any torch, and pip answers a Linux machine without one with the multi-GB CUDA build. So
# where no torch is importable, the CPU build comes first, from PyTorch's CPU index (pip still reads the extra
# indexes and find-links you configured); a torch already installed, such as your own CUDA build, is kept.
if python -c "import torch" >/dev/null 2>&1; then
    echo "install.sh: keeping the installed torch $(python -c 'import torch; print(torch.__version__)')"
elif python -m pip install --quiet --retries 2 --timeout 30 --index-url "$torch_cpu_index" "torch==$torch_version"; then
    installed="$(python -c 'import torch; print(torch.__version__)')"
    echo "install.sh: installed torch $installed with $torch_cpu_index as the index"
else
    echo "install.sh: torch $torch_version could not be installed from $torch_cpu_index (unreachable, e.g. offline" \
         "behind a mirror); installing it from pip's configured index instead, which may be a CUDA build" >&2
    python -m pip install --quiet "torch==$torch_version"
fi

# Editable, because this installs a checkout: its scripts, recipes and tests run from here, and edits to the code
# take effect without reinstalling. `pip install .` (or the wheel) gives a plain install.
if [ -n "$extras" ]; then
    python -m pip install --quiet -e ".[$extras]"
else
    python -m pip install --quiet -e .
fi
# Fonts for synthetic plates (Chinese province characters among them), from Debian's archive when missing.
bash dataset_scripts/install_fonts.sh
# With the test tools: Debian's Chromium, which the browser test of `lpllm demo` drives (it skips without one).
if [[ ",$extras," == *",test,"* ]] && ! command -v chromium >/dev/null 2>&1; then
    sudo=""
    if [[ "$(id -u)" != "0" ]]; then sudo="sudo"; fi
    if command -v apt-get >/dev/null 2>&1 && $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
        echo "install.sh: installed chromium for the browser test"
    else
        echo "install.sh: Chromium could not be installed (no apt-get, or it failed); the browser test will skip" >&2
    fi
fi

python -c "import torch, transformers, trl, peft, datasets; print(f'torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}, datasets {datasets.__version__}')"

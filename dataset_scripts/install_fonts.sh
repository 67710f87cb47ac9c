#!/usr/bin/env bash
# Installs the fonts synthetic plates are rendered with, from Debian's package archive:
#   fonts-wqy-microhei  WenQuanYi Micro Hei: the Chinese province characters (1.6 MB download, Apache-2.0 / GPLv3)
#   fonts-dejavu-core   DejaVu Sans Bold: letters and digits (matplotlib also ships it; this is the fallback)
# Idempotent: does nothing when both are already installed. Needs root (or sudo) on Debian/Ubuntu.
# Elsewhere: `pip install pylopdf-fonts-zh-cn` (Noto Sans SC, OFL, 17 MB) or set LPLLM_CJK_FONT=/path/to/font.
set -euo pipefail

CJK=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
LATIN=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
if [[ -f "$CJK" && -f "$LATIN" ]]; then
    echo "install_fonts: fonts already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_fonts: apt-get not found; install WenQuanYi Micro Hei or Noto Sans CJK yourself," \
         "or 'pip install pylopdf-fonts-zh-cn', or set LPLLM_CJK_FONT" >&2
    exit 1
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends fonts-wqy-microhei fonts-dejavu-core
echo "install_fonts: installed fonts-wqy-microhei fonts-dejavu-core"

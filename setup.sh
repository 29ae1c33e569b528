#!/usr/bin/env bash
# Set up a fresh machine: the Debian Fashion-MNIST package (when apt is there),
# and a virtual environment .venv/ holding this project with its test extras.
# Idempotent; takes a few minutes the first time (torch is a large wheel).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
        || echo "setup.sh: could not install dataset-fashion-mnist; Fashion-MNIST experiments need its files (see README)"
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# torchattacks (test cross-check of the attacks) without its pinned requirements,
# which would pull another torch; what it needs at import is already installed.
.venv/bin/python -m pip install -q --no-deps "torchattacks==3.5.1"
echo "setup.sh: ready (.venv/bin/python -m registry list)"

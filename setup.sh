#!/usr/bin/env bash
# Set up a fresh machine: Debian packages (when apt is there),
# and a virtual environment .venv/ holding this project with its test extras.
# Idempotent; takes a few minutes the first time (torch is a large wheel).
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: Fashion-MNIST's files; FluidSynth and a General MIDI soundfont
# (the raw-audio paper renders its piano data with them).
need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${need[@]}" >/dev/null; } \
        || echo "setup.sh: could not install ${need[*]}; see the README for what needs them"
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# torchattacks (test cross-check of the attacks) without its pinned requirements,
# which would pull another torch; what it needs at import is already installed.
.venv/bin/python -m pip install -q --no-deps "torchattacks==3.5.1"
echo "setup.sh: ready (.venv/bin/python -m registry list)"

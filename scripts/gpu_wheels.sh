#!/usr/bin/env bash
# Download, here (with network), the wheels that wnrl needs on the GPU machine beyond what
# that machine has (Python 3.12 with torch, numpy, tensorboard and pytest; no registry).
#
#     scripts/gpu_wheels.sh [DEST]          # default DEST: .gpu-wheels (gitignored)
#     PYVER=3.11 scripts/gpu_wheels.sh .gpu-wheels-py311   # wheels for this machine's Python,
#                                                          # to rehearse the offline install
#
# What `import wnrl`, the CUDA tests, the benchmark and a training run import, minus the
# GPU machine's own packages: ale-py (Atari), gymnasium and its two small dependencies
# (classic control; wnrl.envs imports it), omegaconf (config; 2.4 vendors its ANTLR
# runtime) with PyYAML, tqdm (progress bar). setuptools and wheel are the build backend
# pip needs to install wnrl itself from the tree (with packaging, which wheel needs). Not carried: scipy (wnrl.evaluate only;
# the GPU training run has no evaluation), imageio (videos), the study and distributed
# extras. Versions are the ones the CPU suite runs with.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.gpu-wheels}
PYVER=${PYVER:-3.12}
LIMIT_MIB=${LIMIT_MIB:-60}
PACKAGES=(ale-py==0.12.1 gymnasium==1.4.0 cloudpickle==3.1.3 farama-notifications==0.0.6
          omegaconf==2.4.0 PyYAML==6.0.4 tqdm==4.70.1 setuptools==84.2.1 wheel==0.48.0
          packaging==26.4)

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    --dest "$DEST" "${PACKAGES[@]}"
wheels=("$DEST"/*.whl)
for w in "${wheels[@]}"; do printf '%10d  %s\n' "$(wc -c < "$w")" "$w"; done
total=$(cat "${wheels[@]}" | wc -c)
echo "total: $total bytes ($((total / 1048576)) MiB) in ${#wheels[@]} wheels"
if (( total > LIMIT_MIB * 1048576 )); then
    echo "error: the wheels take more than ${LIMIT_MIB} MiB; the device carry allows 64 MiB" >&2
    exit 2
fi

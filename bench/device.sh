#!/usr/bin/env bash
# The GPU benchmark (bench/gpu.py) on this project's lent GPU machine, which has CUDA, torch,
# transformers and huggingface_hub but no network and not the rest of paintbridge's needs.
#   bench/device.sh wheels   here, once: download those packages (the versions .venv has) as
#                            Python 3.12 wheels into .whl/ (ignored by git)
#   bench/device.sh run      there: the device tool's run, carry [".whl"], command
#                            "bash bench/device.sh run" (about 6 minutes with SDXL; results in
#                            $OUT/gpu/latest.md and .json, partial ones in $OUT/gpu/partial/)
# Extra arguments after `run` go to bench/run.py (--quick: SD 1.5 only, no torch.compile).
# Rehearsed here 2026-12-03 with that machine's library versions as its device page lists them
# (transformers 5.17.0, huggingface_hub 1.33.0, accelerate 1.15.0, tokenizers 0.23.2; torch 2.13
# CPU in place of its 2.11 CUDA build) and these wheels: the section's CPU rehearsal
# (PAINTBRIDGE_BENCH_GPU_REHEARSE=1, all four rows), and the SD 1.5 and SDXL random-weight builds
# with one step each through plain diffusers and the Engine.
# Ran there 2026-12-04 (one NVIDIA H200, torch 2.11.0+cu130): 177 s for the section, 201 s for
# the command, about 4 minutes of device time with the machine's start (bench/results/gpu-h200-*).
# Again 2026-12-04 (session 21), three fresh machines: 254 s, 223 s and, with `--quick --repeats 7`,
# 107 s a command; with the machines' starts, 700 s of the 900 s budget (gpu-h200-2026-12-04-b/c/d).
set -euo pipefail
cd "$(dirname "$0")/.."
NEEDED="diffusers fastapi starlette pydantic pydantic-core annotated-types typing-inspection
typing-extensions opentelemetry-api importlib-metadata lazy-importer zipp uvicorn platformdirs"

case "${1:-}" in
    wheels)
        grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
        rm -rf .whl && mkdir .whl
        for name in $NEEDED; do
            version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))")
            python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
                --implementation cp --platform manylinux_2_28_x86_64 \
                --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
                -d .whl "$name==$version"
        done
        du -sh .whl
        ;;
    run)
        shift
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site:$PWD/core PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
        python3 bench/run.py --only gpu --out "${OUT:-bench/results/device}/gpu" "$@"
        ;;
    *)
        sed -n 2,9p "$0"
        exit 2
        ;;
esac

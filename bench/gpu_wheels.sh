#!/usr/bin/env bash
# Wheels for `make gpu-check` on a machine that cannot reach a package registry but has Python 3.12 with a
# CUDA build of torch, accelerate, safetensors, huggingface_hub, tokenizers, Pillow, psutil, pytest (the GPU
# machines lent to Kamaal's sessions): what Kamaal needs beyond those, at constraints.txt's versions, into
# .whl/ (ignored by git).  bitsandbytes keeps only its CPU and CUDA 13 libraries (42 MB → ~6 MB).
#
#   bench/gpu_wheels.sh                 # here, with a registry
#   # there (carry .whl), before python3 -m bench.gpu_check:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DEST=.whl
CUDA_LIB=${CUDA_LIB:-cuda130}  # the bitsandbytes library for the machine's torch.version.cuda (13.0)

pinned() { grep -i -m1 "^$1==" constraints.txt || { echo "$1 is not pinned in constraints.txt" >&2; exit 1; }; }
# Kamaal's own needs that the machine lacks (pinned) and their small dependencies (bitsandbytes, torchao: base
# quantization and 8-bit AdamW).
PACKAGES=("$(pinned diffusers)" "$(pinned transformers)" "$(pinned peft)" "$(pinned pydantic)"
          "$(pinned pydantic_core)" "$(pinned tomli_w)" annotated-types==0.8.0 typing-inspection==0.4.5
          importlib_metadata==10.2.0 "$(pinned bitsandbytes)" "$(pinned torchao)")

rm -rf "$DEST" && mkdir -p "$DEST"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DEST" "${PACKAGES[@]}"

# Trim bitsandbytes: pip reads a wheel's files, not its RECORD hashes, so dropping members is safe.
wheel=$(ls "$DEST"/bitsandbytes-*.whl)
drop=$("$PYTHON" - "$wheel" "$CUDA_LIB" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
keep = ("libbitsandbytes_cpu.so", f"libbitsandbytes_{sys.argv[2]}.so")
print("\n".join(n for n in names if n.endswith(".so") and not n.endswith(keep)))
EOF
)
[ -n "$drop" ] && zip -q -d "$wheel" $drop
du -sh "$DEST"

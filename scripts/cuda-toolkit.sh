#!/usr/bin/env bash
# Assemble a CUDA 13.0 build toolkit from NVIDIA's PyPI wheels, for building the `cuda` feature on
# a machine that has no toolkit and no GPU (this one, CI). Idempotent and cached under
# $STARPILLAR_CACHE/cuda-13.0. Prints the environment to build with; use it like:
#
#   eval "$(scripts/cuda-toolkit.sh)"
#   cargo build --release --features cuda
#
# What it makes:
#   - nvcc, cicc, ptxas, the CUDA/CCCL headers and libcudart from the nvidia-* wheels;
#   - link-time stubs for libcuda.so.1 (the driver, which no wheel carries), libcublas,
#     libcublasLt, libcurand and libnvrtc: one empty function per symbol that cudarc declares, with
#     the real sonames. The binary records those sonames; at run time the GPU machine's real
#     libraries (driver + toolkit or the PyPI nvidia-* packages) are loaded instead. The stubs are
#     never loaded: running against them would fail at the first call.
# A machine with a real toolkit needs none of this: set CUDA_HOME / put nvcc on PATH instead.
#
# Flags: --compute-cap N (default 90, Hopper; the GPU the kernels are built for).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

cap=90
while [ $# -gt 0 ]; do
  case "$1" in
    --compute-cap) cap="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cuda-toolkit.sh: unknown flag $1 (try --help)" >&2; exit 2 ;;
  esac
done

version=13.0
root="$STARPILLAR_CACHE/cuda-$version"
wheels="$STARPILLAR_CACHE/cuda-wheels"
pins=(
  "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88"
  "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85"
)
stamp="$(printf '%s\n' "${pins[@]}" "stubs-v1" | sha256sum | cut -d' ' -f1)"

if [ ! -f "$root/.stamp" ] || [ "$(cat "$root/.stamp")" != "$stamp" ]; then
  echo "==> cuda: assembling a CUDA $version build toolkit in $root" >&2
  mkdir -p "$wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 -d "$wheels" "${pins[@]}" >&2
  stage="$(mktemp -d)"
  for p in "${pins[@]}"; do
    name="${p%%==*}"; ver="${p##*==}"
    whl=$(ls "$wheels"/"${name//-/_}"-"$ver"-*.whl)
    python3 -m zipfile -e "$whl" "$stage" >&2
  done
  rm -rf "$root.tmp" && mv "$stage/nvidia/cu13" "$root.tmp" && rm -rf "$stage"
  chmod +x "$root.tmp"/bin/* "$root.tmp"/nvvm/bin/*
  # nvcc.profile looks for headers and libraries under targets/<triple>/.
  mkdir -p "$root.tmp/targets/x86_64-linux"
  ln -s ../../include "$root.tmp/targets/x86_64-linux/include"
  ln -s ../../lib "$root.tmp/targets/x86_64-linux/lib"
  ln -s lib "$root.tmp/lib64"
  ln -sf libcudart.so.13 "$root.tmp/lib/libcudart.so"

  # Link-time stubs, named after the real sonames.
  cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -1)
  [ -n "$cudarc" ] || { echo "cuda-toolkit.sh: cudarc sources not found; run cargo fetch first" >&2; exit 1; }
  mkdir -p "$root.tmp/lib/stubs"
  for spec in driver:cuda:libcuda.so.1 cublas:cublas:libcublas.so.13 \
              cublaslt:cublasLt:libcublasLt.so.13 curand:curand:libcurand.so.10 \
              nvrtc:nvrtc:libnvrtc.so.13; do
    IFS=: read -r module lib soname <<<"$spec"
    src="$root.tmp/lib/stubs/$lib.c"
    grep -hoE '^\s+fn [A-Za-z_][A-Za-z0-9_]*\(' "$cudarc/src/$module/sys/mod.rs" \
      | sed -E 's/^\s+fn ([A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u > "$src"
    cc -shared -fPIC -o "$root.tmp/lib/stubs/lib$lib.so" -Wl,-soname,"$soname" "$src"
    rm "$src"
  done
  rm -rf "$root" && mv "$root.tmp" "$root"
  echo "$stamp" > "$root/.stamp"
fi

cat <<EOF
export CUDA_HOME="$root" CUDA_ROOT="$root" CUDA_COMPUTE_CAP=$cap CUDARC_CUDA_VERSION=13000
export PATH="$root/bin:\$PATH"
export LIBRARY_PATH="$root/lib/stubs:$root/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
EOF

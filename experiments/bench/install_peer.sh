#!/usr/bin/env bash
# Installs the PyTorch reference (asteroid 0.7.0 DCCRNet, torch 2.13.0 CPU) into its own virtual environment.
# Usage: bash experiments/bench/install_peer.sh [VENV_DIR]   (default: .venv-peer in the current folder); then
# python experiments/bench/bench.py --peer-python VENV_DIR/bin/python (experiments/bench/RESULTS.md).
# Facts this encodes, found on the 2-core AMD EPYC machines of the measurements in RESULTS.md (2026-11-25 to 12-02):
#  - there, `pip install torch==2.13.0` takes a CPU wheel that lies on disk; any other torch spec downloads a multi-GB
#    CUDA build.
#  - asteroid pulls torchaudio 2.11.0, a CUDA build whose .so files need libc10_cuda.so: `import asteroid` then fails
#    (asteroid.losses -> torch_stoi -> torchaudio). With those .so files moved aside torchaudio imports as pure Python,
#    which is all asteroid needs.
#  - asteroid imports `requests` without declaring it.
#  - asteroid 0.7.0 passes a numpy int64 as an LSTM input_size, which torch 2.13 rejects: cast it to int before use
#    (e.g. wrap asteroid.masknn.recurrent.DCCRMaskNetRNN.__init__ and convert its first argument with int()).
set -euo pipefail
venv=${1:-.venv-peer}
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q asteroid requests
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p "$venv/torchaudio_libs_disabled"
mv "$site"/torchaudio/lib/*.so "$venv/torchaudio_libs_disabled/" 2>/dev/null || true
"$venv/bin/python" -c "import asteroid, torch; print('asteroid', asteroid.__version__, 'torch', torch.__version__)"

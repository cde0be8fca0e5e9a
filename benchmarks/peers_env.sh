#!/usr/bin/env bash
# The benchmark environment for benchmarks/bench_peers.py: .venv-bench, beside (never in) .venv.
#
#     bash benchmarks/peers_env.sh          # then: .venv-bench/bin/python benchmarks/bench_peers.py
#
# LitData and MosaicML Streaming declare torchvision (and, for Streaming, every cloud SDK), and a
# resolver would replace the CPU torch with a CUDA one to satisfy them. So: the CPU torch first,
# this repo, then both peers with --no-deps, then only what they import on a local read/write
# path (found by importing and running them):
#   litdata 0.2.76:            lightning-utilities, boto3 (imported at top level), requests
#   mosaicml-streaming 0.13.0: transformers<5 (its DataLoader module imports it), Brotli,
#                              python-snappy, zstd, xxhash, catalogue
#   filelock==3.18.0: Streaming builds its barrier's FileLock in the main process and takes it
#     in the DataLoader workers; filelock 3.2x/4.x refuse a lock inherited across fork
#     ("UnixFileLock ... was inherited across fork"), so 2 workers crash.
# numpy stays .venv's (2.4), against Streaming's declared numpy<2.2: it runs as measured.
# Not installed: torchvision. PyPI's 0.28.0 (the one for torch 2.13) is a CUDA build: its _C.so
# links libtorch_cuda.so and libc10_cuda.so, which the CPU torch lacks, so `import torchvision`
# raises "RuntimeError: operator torchvision::nms does not exist". `import streaming` imports
# its vision datasets and so torchvision; bench_peers.py loads `streaming.base` (StreamingDataset,
# MDSWriter: the whole MDS read/write path) without the package's __init__. LitData imports
# torchvision only for image serializers, which bytes columns do not use.
#
# BASE=.venv VENV=.venv-peers bash benchmarks/peers_env.sh  (what `make test` does): layered on
# an existing environment instead: its site-packages (the CPU torch, numpy, this repo) are
# appended to the new venv's path by a .pth file, so nothing of it is installed again, and only
# the peers and their few pins (above) are installed here, ahead of BASE's versions (BASE's
# huggingface-hub 1.x, filelock 4.x and xxhash 4.x are shadowed, never touched). Small: no torch.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-bench}  # another folder: VENV=path bash benchmarks/peers_env.sh
BASE=${BASE:-}
PIP="$VENV/bin/pip"

python3 -m venv "$VENV"
if [ -n "$BASE" ]; then
    site() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
    base_site=$(cd "$(site "$BASE")" && pwd -P)
    echo "import site; site.addsitedir('$base_site')" >"$(site "$VENV")/_base_venv.pth"
else
    "$PIP" install torch==2.13.0  # the CPU build, from this machine's local wheels
    "$PIP" install -e .
fi
"$PIP" install -q --no-deps litdata==0.2.76 mosaicml-streaming==0.13.0
"$PIP" install -q lightning-utilities boto3 requests \
    "transformers<5" Brotli python-snappy zstd "xxhash<4" catalogue "filelock==3.18.0"

"$VENV/bin/python" - <<'EOF'
import torch
assert torch.version.cuda is None, f"torch {torch.__version__} is not the CPU build"
import litdata
from importlib.metadata import version
print(f"torch {torch.__version__}, litdata {litdata.__version__}, "
      f"mosaicml-streaming {version('mosaicml-streaming')}: ready")
EOF

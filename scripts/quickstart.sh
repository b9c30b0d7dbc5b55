#!/usr/bin/env bash
# One command from a fresh clone to a running service on the embedded (in-process) backend:
# venv + install, locate or download the corpus, train word2vec and the default network (the RNN)
# with quick settings
# (skipped when a version already exists), then serve on 127.0.0.1:$PORT (default 8000).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"

# Training and the in-process backend need the [train] and [local] extras (TensorFlow,
# TensorLayer); `pip install antispam` alone is the remote frontend. Checked without importing.
if [ ! -x .venv/bin/antispam ] || ! .venv/bin/python -c 'import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("tensorflow", "tensorflow_serving", "tensorlayer", "tf_keras")))'; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[local,train]'
fi
. .venv/bin/activate

antispam data                       # --data PATH or $ANTISPAM_DATA, else download + sha256 check
# The default network (the RNN since issue 20; ANTISPAM_MODEL_NAME picks another kind).
MODEL="${ANTISPAM_MODEL_NAME:-$(python -c 'from antispam.config import ServeConfig; print(ServeConfig.model_name)')}"
if [ -z "$(ls -d "models/$MODEL"/[0-9]* 2>/dev/null)" ]; then
  # word2vec first (data/word2vec), then the network -> models/$MODEL/N, with its calibration and
  # operating points fitted on the validation split.
  antispam train "$MODEL" --max-seconds 150
fi
# Keys are off here, so the service listens on 127.0.0.1 only (antispam serve's default; another
# address with keys off needs --allow-open: docs/operations.md#exposure-who-can-reach-the-service).
echo "serving on http://127.0.0.1:${PORT}  (try: curl 'http://127.0.0.1:${PORT}/predict?text=...')"
exec antispam serve --backend local --host 127.0.0.1 --port "$PORT" --model-name "$MODEL"

#!/usr/bin/env bash
# Regenerate the lock files the Docker images install from (Dockerfile), from setup.cfg:
#   frontend.lock  the core install + [postgres] + [redis] (remote frontend: gRPC/REST to TF
#                  Serving, no TensorFlow; PostgreSQL feedback store and Redis rate limits, issue 23)
#   trainer.lock   core + [local] + [train] + [postgres] + [redis] (nightly retrain, and the
#                  in-process backend's service: every frontend dependency is in it too)
# Every pin carries the sha256 of each of its files on PyPI, so `pip install --require-hashes`
# installs exactly these bytes (--allow-unsafe pins setuptools too: TensorFlow requires it).
# Resolved for the images' platform, CPython 3.11 on linux x86_64: run this there (this check
# refuses anything else; python:3.11-slim-bookworm will do). tests/deploy/test_packaging.py
# fails when setup.cfg and the locks drift apart.
#
#   requirements/compile.sh              keep existing pins where setup.cfg still allows them
#   requirements/compile.sh --upgrade    move every pin to the newest allowed release
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
"$python" -c 'import sys, platform; assert sys.version_info[:2] == (3, 11) and sys.platform == "linux" and platform.machine() == "x86_64", "lock for CPython 3.11 on linux x86_64"'

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$python" -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q --upgrade pip 'pip-tools>=7.4'

# PyPI only: a machine's own pip configuration (mirrors, find-links, constraints) must not leak
# into the locks.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT
export CUSTOM_COMPILE_COMMAND="requirements/compile.sh"
compile() {
  "$tools/venv/bin/pip-compile" --quiet --resolver=backtracking --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
    "$@" setup.cfg
}
compile --extra postgres --extra redis --output-file requirements/frontend.lock "${@}"
compile --extra local --extra train --extra postgres --extra redis --output-file requirements/trainer.lock "${@}"

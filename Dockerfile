# The antispam images: two targets from one build, sharing the base layers and one wheel of the
# package, so the trainer and the server always share the text pipeline and the version layout.
# TF Serving runs from its own official image (docker-compose.yml).
#
#   frontend  `antispam serve` over gRPC to TF Serving, REST as fallback: the core install, no
#             TensorFlow (requirements/frontend.lock). docker-compose's `antispam` service.
#   trainer   the nightly job (`antispam retrain`, deploy/nightly-retrain.sh) and the in-process
#             backend: core + [local] + [train] (requirements/trainer.lock). The default target.
#
#   docker build --target frontend -t antispam .
#   docker build --target trainer -t antispam-trainer .
#   docker run -p 8000:8000 -v feedback:/feedback -e ANTISPAM_KEYS_FILE=/feedback/keys.tsv \
#       -e ANTISPAM_TFS_GRPC=tfs:8500 -e ANTISPAM_TFS_REST=http://tfs:8501 antispam
#   docker run -p 8000:8000 -v "$PWD/models:/models:ro" -v feedback:/feedback \
#       -e ANTISPAM_KEYS_FILE=/feedback/keys.tsv antispam-trainer serve --backend local
#
# The images listen on 0.0.0.0 (ANTISPAM_HOST below), so `antispam serve` needs API keys on
# (ANTISPAM_KEYS_FILE; add keys with `docker exec … antispam keys add`) or ANTISPAM_ALLOW_OPEN=1:
# with keys off on a non-loopback address it refuses to start (issue 21).
#
# Dependencies are installed from the lock files (exact versions, sha256 of every file) before
# any code is copied, so a code change does not reinstall them. The package goes in afterwards
# with --no-deps, and `pip check` fails the build if the lock no longer satisfies setup.cfg.
# tests/deploy/test_packaging.py runs these install steps without Docker.
#
# Python 3.11 is what the project is developed and tested with; TensorFlow 2.21 has wheels for it.
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    ANTISPAM_HOST=0.0.0.0 \
    ANTISPAM_PORT=8000 \
    ANTISPAM_MODEL_BASE=/models \
    ANTISPAM_FEEDBACK_DB=/feedback/feedback.db

# tzdata: the retrain schedule is local time in the zone TZ names (docker-compose.yml).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged uid: the models and feedback volumes are created owned by it, and the
# k8s manifests set the same runAsUser / fsGroup.
RUN groupadd --gid 10001 antispam \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin antispam \
 && mkdir -p /models/cnn /models/rnn /feedback /data /app \
 && chown -R antispam:antispam /models /feedback /data

# One wheel of the package for both targets. Built outside /app, so no source tree is left where
# the services run (a source `antispam/` in the working directory would shadow the installed
# package, which maps word2vec/ and network/ into it).
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY antispam antispam
COPY word2vec word2vec
COPY network network
RUN pip wheel --no-deps --wheel-dir /dist .

# The remote frontend: gRPC to TF Serving with REST as fallback (antispam/backends/fallback.py).
FROM base AS frontend
WORKDIR /app
COPY requirements/frontend.lock /tmp/requirements/frontend.lock
RUN pip install --require-hashes -r /tmp/requirements/frontend.lock
COPY --from=wheel /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/antispam-*.whl \
 && pip check \
 && python -c "import antispam.cli, antispam.app, antispam.backends.fallback" \
 && ! python -c "import tensorflow" 2>/dev/null \
 && rm -rf /tmp/dist
# There is no in-process backend here (no TensorFlow): never fall back to it.
ENV ANTISPAM_BACKEND=grpc
USER antispam
EXPOSE 8000
# /readyz answers 200 once a model version can answer; the compose file and k8s probes use it too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
ENTRYPOINT ["antispam"]
CMD ["serve"]

# The trainer: `antispam retrain` on a schedule, `antispam train`, and `serve --backend local`.
# Last in the file, so a plain `docker build .` gives the image that can do everything.
FROM base AS trainer
WORKDIR /app
COPY requirements/trainer.lock /tmp/requirements/trainer.lock
RUN pip install --require-hashes -r /tmp/requirements/trainer.lock
COPY --from=wheel /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/antispam-*.whl \
 && pip check \
 && python -c "import antispam.cli, antispam.word2vec, antispam.network, antispam.backends.local" \
 && rm -rf /tmp/dist
COPY deploy/nightly-retrain.sh /usr/local/bin/nightly-retrain
USER antispam
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
ENTRYPOINT ["antispam"]
CMD ["serve"]

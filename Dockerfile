# The antispam service image: the Tornado frontend (`antispam serve`) and the nightly job
# (`antispam retrain`) from one build, so the trainer and the server always share the text
# pipeline and the version layout. TF Serving runs from its own official image (docker-compose.yml).
#
#   docker build -t antispam .
#   docker run -p 8000:8000 -v "$PWD/models:/models:ro" antispam            # local backend
#
# Python 3.11 is what the project is developed and tested with; TensorFlow 2.21 has wheels for it.
FROM python:3.11-slim-bookworm

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

WORKDIR /app
# Dependencies first (the heavy layer: TensorFlow, TensorLayer), installed from the metadata and
# the package's __init__ (which holds the version) alone, so a code change does not reinstall them.
COPY pyproject.toml setup.cfg README.m[d] ./
COPY antispam/__init__.py antispam/__init__.py
RUN mkdir -p antispam/backends/protos antispam/commands word2vec network \
 && pip install . \
 && pip uninstall -y antispam \
 && rm -rf antispam word2vec network build *.egg-info
COPY antispam antispam
COPY word2vec word2vec
COPY network network
COPY deploy/nightly-retrain.sh /usr/local/bin/nightly-retrain
RUN pip install --no-deps . && rm -rf build *.egg-info \
 && python -c "import antispam.cli, antispam.word2vec, antispam.network"

USER antispam
EXPOSE 8000
# /readyz answers 200 once a model version can answer; the compose file and k8s probes use it too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
ENTRYPOINT ["antispam"]
CMD ["serve"]

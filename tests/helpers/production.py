"""The production path, built once per test session: word2vec and both networks trained on the
real corpus through the ``antispam`` command with quick settings, in the folder layout
``scripts/quickstart.sh`` uses (``data/``, ``data/word2vec/``, ``models/<name>/<N>``).

The default network (the model ``antispam serve`` serves unless told otherwise,
``ServeConfig.model_name``) trains one full epoch, so its test figures mean something; the other
network trains one epoch without the built messages, enough for a real export to serve. The
tests in tests/e2e/test_production_path.py share the result (a session fixture): training is the
expensive part, a few minutes on two cores.

``ANTISPAM_PRODUCTION_DIR`` names a folder to build in (and reuse: a finished step is not run
again); without it a session temp folder is used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from antispam import versions
from tests.helpers.report import report

PRODUCTION_DIR_ENV = "ANTISPAM_PRODUCTION_DIR"
KINDS = ("cnn", "rnn")
# Quick settings. word2vec: one pass over the training split (about a minute). The default
# network: one epoch with every default setting (about two minutes for the CNN). The other
# network: one epoch without the built messages (its export is what is tested, not its figures).
WORD2VEC_ARGS = ("--epochs", "1")
DEFAULT_NETWORK_ARGS = ("--epochs", "1")
OTHER_NETWORK_ARGS = ("--epochs", "1", "--augment", "0")
STEP_TIMEOUT = 1800


def default_kind() -> str:
    """The network the service serves by default, read from the one place it is set."""
    from antispam.config import ServeConfig

    return ServeConfig().model_name


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1",
            **extra}


@dataclass
class Production:
    root: Path
    corpus: Path
    default: str
    # kind -> what `antispam train KIND` printed (version, test and validation headlines, ...)
    trained: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall seconds (this session)

    @property
    def model_base(self) -> Path:
        return self.root / "models"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def word2vec(self) -> Path:
        return self.data_dir / "word2vec"

    def version_dir(self, kind: str) -> Path:
        return versions.version_dir(self.model_base / kind, int(self.trained[kind]["version"]))

    def antispam(self, *args: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """``antispam ARGS`` in the production folder; a failure fails the test with its stderr."""
        done = subprocess.run([sys.executable, "-m", "antispam", *args], cwd=self.root, env=subprocess_env(),
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"antispam {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
        return done


def build(root: Path, corpus: Path) -> Production:
    """Train what is missing in ``root`` (word vectors, then each network) and return the result."""
    production = Production(root, corpus, default_kind())
    root.mkdir(parents=True, exist_ok=True)
    common = ("--data", str(corpus), "--data-dir", str(production.data_dir))
    if not (production.word2vec / "vectors.npy").is_file():
        started = time.monotonic()
        production.antispam("train", "word2vec", *common, "--out", str(production.word2vec), "--no-progress",
                            *WORD2VEC_ARGS)
        production.seconds["word2vec"] = time.monotonic() - started
    record = root / "trained.json"
    known = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    for kind in sorted(KINDS, key=lambda k: k != production.default):  # the default first
        if kind in known and versions.version_dir(production.model_base / kind, known[kind]["version"]).is_dir():
            production.trained[kind] = known[kind]
            continue
        quick = DEFAULT_NETWORK_ARGS if kind == production.default else OTHER_NETWORK_ARGS
        started = time.monotonic()
        done = production.antispam("train", kind, *common, "--word2vec", str(production.word2vec),
                                   "--model-base", str(production.model_base),
                                   "--report-dir", str(root / "reports"), "--no-progress", *quick)
        production.seconds[kind] = time.monotonic() - started
        production.trained[kind] = json.loads(done.stdout)
        record.write_text(json.dumps(production.trained, indent=2), encoding="utf-8")
    return production


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> Production:
    corpus = os.environ.get("ANTISPAM_DATA")
    if not corpus or not Path(corpus).exists():
        pytest.skip("ANTISPAM_DATA is not set to the msglog corpus")
    given = os.environ.get(PRODUCTION_DIR_ENV)
    root = Path(given) if given else tmp_path_factory.mktemp("production")
    built = build(root.resolve(), Path(corpus).resolve())
    steps = {step: round(seconds, 1) for step, seconds in built.seconds.items()}
    report("production path trained", f"{built.root}; steps run this session (wall s) {json.dumps(steps)}")
    return built

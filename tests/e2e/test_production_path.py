"""The production path on the real corpus (issue 22): what a release depends on, proven in CI.

One session fixture (tests/helpers/production.py) trains word2vec, the default network and the
other network through the ``antispam`` command with quick settings. Then:

* the default network's test-split figures stay above floors (a regression guard set well below
  what quick training measures, not a target; the figures are printed);
* every export has only ops a stock TF Serving build runs, and loads and answers in a fresh
  process that has TensorFlow and nothing of this project;
* TF Serving (the stand-in: the official gRPC and REST wire formats, the same SavedModel loader)
  serves both exports, and gRPC, REST and the in-process backend give the same verdicts;
* ``scripts/quickstart.sh`` (the README's first command) starts on a free port and answers the
  README's curls.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from antispam import versions
from antispam.labels import SPAM
from antispam.network.servable import graph_ops, unservable_ops
from tests.helpers.production import KINDS, Production, production, subprocess_env  # noqa: F401
from tests.helpers.report import report

pytestmark = [pytest.mark.production, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Floors on the default network after quick training (one epoch), at its own operating points,
# on the test split. Measured with these settings on a 2-core machine (issue 22): RNN F1 0.954,
# everyday messages flagged 3.9% (the CNN, default before: 0.944, 1.5-2.2%). Set well clear of
# those, so another seed or machine passes and a broken pipeline (labels flipped, vectors
# misaligned, windows lost) does not. The test prints the figures of every run.
F1_FLOOR = 0.90
EVERYDAY_FPR_CEILING = 0.10
REVIEW = 0.5  # the default review threshold: "flagged" for the false-positive rate
BLOCK = 0.9


def test_the_default_network_stays_above_the_floors_on_the_test_split(production: Production) -> None:
    """``antispam evaluate`` on the served version: its decision report at the version's own
    operating points (the service's default policy) on the test split and the held-out everyday
    messages."""
    kind = production.default
    done = production.antispam("evaluate", "--model", str(production.model_base / kind),
                               "--data", str(production.corpus), "--data-dir", str(production.data_dir))
    [evaluated] = json.loads(done.stdout)["models"]
    decision = evaluated["decision"]
    got, counts = decision["figures"], decision["counts"]
    figures = {"model": kind, "version": production.trained[kind]["version"],
               "test_f1_at_review": got["review_f1"], "test_count": evaluated["evaluation"]["count"],
               "everyday_flagged": got["everyday_flagged"], "everyday_count": counts["everyday_flagged"],
               "block_precision": got["block_precision"], "review_recall": got["review_recall"],
               "thresholds": decision["thresholds"],
               "trainer_test_f1_at_0.5": round(production.trained[kind]["test"]["f1"], 4),
               "floors": {"f1": F1_FLOOR, "everyday_flagged_ceiling": EVERYDAY_FPR_CEILING},
               "train_seconds": production.trained[kind].get("wall_seconds")}
    report("model-quality floors", json.dumps(_rounded(figures)))
    assert decision["thresholds"]["source"] == "version"  # the version's own operating points
    assert got["review_f1"] is not None and got["review_f1"] >= F1_FLOOR, figures
    assert counts["everyday_flagged"] > 100, figures
    assert got["everyday_flagged"] is not None and got["everyday_flagged"] <= EVERYDAY_FPR_CEILING, figures


@pytest.mark.parametrize("kind", KINDS)
def test_every_export_has_only_ops_stock_tf_serving_runs(production: Production, kind: str) -> None:
    path = production.version_dir(kind)
    ops = graph_ops(path)
    assert sum(ops.values()) > 50, ops  # the walk reached the network, not an empty shell
    assert unservable_ops(path) == {}


FRESH_PROCESS = """
import json, sys
sys.modules["antispam"] = None  # any import of this project fails: TensorFlow only
import numpy as np
import tensorflow as tf

model = tf.saved_model.load(sys.argv[1])
outputs = model.signatures["serving_default"](inputs=tf.constant(np.load(sys.argv[2])))
np.save(sys.argv[3], outputs["probabilities"].numpy())
print(json.dumps(sorted(name for name in sys.modules if name.startswith("antispam") and sys.modules[name])))
"""


@pytest.mark.parametrize("kind", KINDS)
def test_every_export_loads_in_a_fresh_tensorflow_only_process(production: Production, kind: str,
                                                                tmp_path: Path) -> None:
    loaded = versions.load_version(production.model_base / kind, production.trained[kind]["version"])
    from antispam.data import load_split

    texts = [s.text for s in load_split(production.corpus, production.data_dir, progress=False).test[:64]]
    from antispam.text import default_segmenter

    segmenter = default_segmenter()
    rows, _plan = loaded.featurizer.featurize([segmenter.tokenize(t) for t in texts])
    np.save(tmp_path / "rows.npy", rows)
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(loaded.path), str(tmp_path / "rows.npy"),
                           str(tmp_path / "out.npy")], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), loaded.call(rows), atol=1e-5)


def test_both_exports_serve_through_tf_serving_over_grpc_and_rest_as_in_process(production: Production,
                                                                                tmp_path: Path) -> None:
    import asyncio

    from antispam.backends.grpc import GrpcBackend
    from antispam.backends.local import LocalBackend
    from antispam.backends.rest import RestBackend
    from antispam.config import ServeConfig
    from antispam.data import load_split
    from antispam.testing.standin_tfs import StandinTFS
    from antispam.text import default_segmenter

    split = load_split(production.corpus, production.data_dir, progress=False)
    # Both labels (the split lists one label first), and the README's texts.
    spam = [s.text for s in split.test if s.label == SPAM][:75]
    texts = spam + [s.text for s in split.test if s.label != SPAM][:75] + [
        "加微信领取优惠券，详询13800138000", "妈妈，我明天晚上回家吃饭", "代開發票，加Ｖ信", "你好",
        "妈妈，我明天晚上回家吃饭，记得帮我把阳台上的衣服收一下。加微信领取优惠券，详询13800138000，代开发票"]
    segmenter = default_segmenter()
    tokens = [segmenter.tokenize(t) for t in texts]

    async def predict(backend: Any) -> np.ndarray:
        await backend.start()
        try:
            for _ in range(600):
                if backend.ready:
                    break
                await asyncio.sleep(0.1)
            result = await backend.predict(tokens, timeout=60)
            return np.asarray(result.spam_probability, dtype=np.float64)
        finally:
            await backend.close()

    tfs = StandinTFS(production.model_base, keep=1, poll=0.5, log_path=tmp_path / "standin.log").start()
    try:
        figures = {}
        for kind in KINDS:
            version = int(production.trained[kind]["version"])
            tfs.wait_until(kind, version, timeout=120)
            config = ServeConfig(model_base=str(production.model_base), model_name=kind, tfs_grpc=tfs.grpc_target,
                                 tfs_rest=tfs.rest_url, poll_seconds=0.5, deadline_ms=60000)
            local = asyncio.run(predict(LocalBackend(config)))
            grpc = asyncio.run(predict(GrpcBackend(config)))
            rest = asyncio.run(predict(RestBackend(config)))
            for name, remote in (("grpc", grpc), ("rest", rest)):
                np.testing.assert_allclose(remote, local, atol=1e-5, err_msg=f"{kind} over {name}")
                for threshold in (REVIEW, BLOCK):
                    assert np.array_equal(remote >= threshold, local >= threshold), (kind, name, threshold)
            figures[kind] = {"version": version, "texts": len(texts), "spam_at_review": int(np.sum(local >= REVIEW)),
                             "max_abs_diff_grpc": float(np.max(np.abs(grpc - local))),
                             "max_abs_diff_rest": float(np.max(np.abs(rest - local)))}
            assert 0 < figures[kind]["spam_at_review"] < len(texts)  # real verdicts both ways
        report("served through the TF Serving stand-in", json.dumps(figures))
    finally:
        tfs.stop()


# -- scripts/quickstart.sh -----------------------------------------------------------------------

def readme_curls() -> list[tuple[str, dict[str, Any]]]:
    """The README's ``$ curl`` commands (continuation lines joined) with the JSON shown after each."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```console\n(.*?)```", text, re.S)
    assert block, "README has no console block"
    lines = block.group(1).splitlines()
    out: list[tuple[str, dict[str, Any]]] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("$ curl"):
            command = lines[i][2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            out.append((command, json.loads(lines[i + 1])))
        i += 1
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_quickstart_serves_and_answers_the_readme_curls(production: Production, tmp_path: Path) -> None:
    """scripts/quickstart.sh from a checkout that already has its venv (CI's) and, in the
    production folder, the word vectors and a CNN version, so it skips installing and training
    (as it does on a second run) and serves on a free port. The README's curls, sent to that
    port, get answers of the shape the README shows."""
    curls = readme_curls()
    assert len(curls) >= 5
    checkout = production.root  # quickstart runs in the folder above its script: data/, models/ are here
    (checkout / "scripts").mkdir(exist_ok=True)
    (checkout / "scripts" / "quickstart.sh").write_bytes((REPO / "scripts" / "quickstart.sh").read_bytes())
    venv = checkout / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.prefix), target_is_directory=True)
    port = free_port()
    started = time.monotonic()
    log = open(tmp_path / "quickstart.log", "w+", encoding="utf-8")
    process = subprocess.Popen(["bash", str(checkout / "scripts" / "quickstart.sh")], cwd=tmp_path,
                               env=subprocess_env(PORT=str(port), ANTISPAM_DATA=str(production.corpus)),
                               stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        ready = None
        while time.monotonic() - started < 600:
            assert process.poll() is None, f"quickstart exited {process.returncode}:\n{_tail(log)}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                status = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                         f"http://127.0.0.1:{port}/readyz"], capture_output=True, text=True)
                if status.stdout == "200":
                    ready = time.monotonic() - started
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert ready is not None, f"quickstart did not serve within 600 s:\n{_tail(log)}"
        answers = []
        for command, shown in curls:
            args = shlex.split(command.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
            done = subprocess.run(args, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (command, done.stderr)
            got = json.loads(done.stdout)
            answers.append(got)
            assert set(got) == set(shown), (command, got)
            if "error" in shown:
                assert got["error"]["code"] == shown["error"]["code"], (command, got)
                continue
            items = got["data"] if isinstance(got["data"], list) else [got["data"]]
            expected = shown["data"] if isinstance(shown["data"], list) else [shown["data"]]
            assert len(items) == len(expected), (command, got)
            for item, example in zip(items, expected):
                assert item["text"] == example["text"]
                assert set(example) - {"capped"} <= set(item), (command, item)
                assert item["model"]["name"] == production.default
                assert item["suggestion"] in ("pass", "review", "block")
            if "X-Request-Id" in command:
                assert got["request_id"] == shown["request_id"]
        answered = time.monotonic() - started
        report("quickstart", json.dumps({"port": port, "seconds_to_ready": round(ready, 1),
                                         "seconds_to_all_answers": round(answered, 1), "curls": len(curls),
                                         "answers": [_verdicts(a) for a in answers]}, ensure_ascii=False))
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def _verdicts(answer: dict[str, Any]) -> Any:
    if "error" in answer:
        return answer["error"]["code"]
    items = answer["data"] if isinstance(answer["data"], list) else [answer["data"]]
    return [f"{item['suggestion']} {item['spam_probability']:.3f}" for item in items]


def _tail(log: Any) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-4000:]

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from antispam import data
from antispam.data import DataError, Sample
from antispam.labels import PASS, SPAM
from antispam.text import normalize
from tests.helpers.corpus import write_corpus


def make_tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_reads_folder_and_rebuilds_raw_text(tiny_corpus: Path) -> None:
    samples = data.read_corpus(tiny_corpus)
    assert len(samples) == 60
    assert {s.label for s in samples} == {SPAM, PASS}
    first_pass = next(s for s in samples if s.label == PASS)
    assert first_pass.text == "妈妈，我们明天回家吃晚饭第一次"


def test_reads_tarball(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "c.tar.gz", {
        "msglog/msgpass.log.seg": "你好 世界\n".encode(),
        "msglog/msgspam.log.seg": "代开 发票\n".encode(),
    })
    assert data.read_corpus(tarball) == [Sample("你好世界", PASS), Sample("代开发票", SPAM)]


def test_missing_member_names_the_file(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "c.tar.gz", {"msglog/msgpass.log.seg": "你好\n".encode()})
    with pytest.raises(DataError, match="msgspam.log.seg"):
        data.read_corpus(tarball)
    (tmp_path / "folder" / "msglog").mkdir(parents=True)
    (tmp_path / "folder" / "msglog" / "msgpass.log.seg").write_text("你好\n", encoding="utf-8")
    with pytest.raises(DataError, match="msgspam.log.seg is missing"):
        data.read_corpus(tmp_path / "folder")


def test_empty_file_names_the_file(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, ["代开 发票"], ["你好"])
    (root / "msglog" / "msgpass.log.seg").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="msgpass.log.seg holds no messages"):
        data.read_corpus(root)


def test_wrong_encoding_names_file_and_line(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, ["代开 发票"], ["你好"])
    (root / "msglog" / "msgspam.log.seg").write_bytes("第一行\n".encode() + "第二行".encode("gbk"))
    with pytest.raises(DataError, match=r"msgspam.log.seg is not UTF-8 \(line 2"):
        data.read_corpus(root)


def test_not_a_tarball(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(DataError, match="not a readable"):
        data.read_corpus(bogus)


def test_dedupe_on_normalized_text_and_drops_conflicts() -> None:
    samples = [
        Sample("电话123", PASS), Sample("电话456", PASS),  # same after digit masking
        Sample("优惠！", SPAM), Sample("优惠", SPAM),  # same after punctuation removal
        Sample("你好", PASS), Sample("你好", SPAM),  # both labels: unlearnable, dropped
        Sample("😀", PASS),  # empty after normalization
    ]
    kept, stats = data.dedupe(samples)
    assert [s.text for s in kept] == ["电话123", "优惠！"]
    assert stats == {"read": 7, "empty_after_normalization": 1, "duplicates": 3,
                     "conflicting_labels": 1, "kept": 2}


def test_split_is_deterministic_disjoint_and_stratified(tiny_corpus: Path) -> None:
    kept, _ = data.dedupe(data.read_corpus(tiny_corpus))
    a = data.split(kept)
    b = data.split(list(reversed(kept)))  # input order must not matter
    assert a.manifest()["fingerprints"] == b.manifest()["fingerprints"]
    keys = [{normalize(s.text) for s in part} for part in (a.train, a.validation, a.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert sum(map(len, keys)) == len(kept)
    counts = a.manifest()["counts"]
    assert counts["train"] == {"spam": 24, "pass": 24}
    assert counts["test"] == {"spam": 3, "pass": 3}


def test_split_side_does_not_depend_on_other_messages(tiny_corpus: Path) -> None:
    kept, _ = data.dedupe(data.read_corpus(tiny_corpus))
    full = data.split(kept)
    extra = data.split(kept + [Sample(f"新增加的垃圾短信{i}号", SPAM) for i in range(3)])
    # Adding messages can shift a cut point by at most the number added, never reshuffle.
    moved = {normalize(s.text) for s in full.test} - {normalize(s.text) for s in extra.test}
    assert len(moved) <= 3


def test_real_corpus_split_counts(real_corpus: Path) -> None:
    result = data.load_split(real_corpus, progress=False)
    manifest = result.manifest()
    total = sum(sum(c.values()) for c in manifest["counts"].values())
    assert total == manifest["dedup"]["kept"] > 16000
    assert abs(len(result.test) - 0.1 * total) < 5


def test_locate_prefers_source_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("ANTISPAM_DATA", str(tmp_path / "b"))
    assert data.locate(tmp_path / "a") == tmp_path / "a"
    assert data.locate(None) == tmp_path / "b"
    monkeypatch.setenv("ANTISPAM_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"\$ANTISPAM_DATA"):
        data.locate(None)


@pytest.fixture
def file_server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_checksum(file_server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ANTISPAM_DATA", raising=False)
    root, base = file_server
    payload = make_tarball(root / "msglog.tar.gz", {
        "msglog/msgpass.log.seg": "你好 世界\n".encode(),
        "msglog/msgspam.log.seg": "代开 发票\n".encode(),
    }).read_bytes()
    good = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "data"
    path = data.locate(None, dest, url=f"{base}/msglog.tar.gz", sha256=good, progress=False)
    assert path.read_bytes() == payload and len(data.read_corpus(path)) == 2
    with pytest.raises(DataError, match="checksum mismatch"):
        data.locate(None, tmp_path / "other", url=f"{base}/msglog.tar.gz", sha256="0" * 64,
                    progress=False)
    assert not list((tmp_path / "other").glob("*"))  # the bad file was discarded


def test_download_failure_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ANTISPAM_DATA", raising=False)
    with pytest.raises(DataError, match="--data PATH or set ANTISPAM_DATA"):
        data.locate(None, tmp_path, url="http://127.0.0.1:9/none.tar.gz", sha256="0" * 64,
                    progress=False)

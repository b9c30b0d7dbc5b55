"""The labeled corpus: locate or fetch it, read it, remove duplicates, split it once.

The corpus has the layout of the public ``tensorlayer/text-antispam`` data set:
``msglog/msgpass.log.seg`` and ``msglog/msgspam.log.seg``, one pre-segmented message a line,
as a ``.tar.gz`` or an unpacked folder. Each line is joined back into raw text
(:func:`antispam.text.rebuild_raw`) so the trainer sees the same pipeline the server does.

The split is a pure function of the texts: within each class, messages are ordered by a seeded
hash of their normalized text and cut at fixed fractions. Every command recomputes the same split
from the same corpus, a message's side never depends on which other messages exist, and no test
text can reach training.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from antispam.config import Paths, env_name
from antispam.errors import UserError
from antispam.labels import PASS, SPAM
from antispam.text import normalize, rebuild_raw

PUBLIC_URL = (
    "https://raw.githubusercontent.com/tensorlayer/text-antispam/master/word2vec/data/msglog.tar.gz"
)
PUBLIC_SHA256 = "9cc5ce4957d5d3c13fcea2d23464d036969d95d30ebf9d3798f2ec11de24c054"
ENV_VAR = env_name(Paths, "data")  # ANTISPAM_DATA
MEMBERS = {PASS: "msglog/msgpass.log.seg", SPAM: "msglog/msgspam.log.seg"}

SPLIT_SEED = 20171128
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, validation, test


class DataError(UserError):
    """The corpus cannot be found, fetched or read; the message says what to do."""


@dataclass(frozen=True)
class Sample:
    text: str  # raw text, as a client would send it
    label: int  # labels.SPAM (0) or labels.PASS (1)


@dataclass
class Split:
    train: list[Sample]
    validation: list[Sample]
    test: list[Sample]
    seed: int = SPLIT_SEED
    stats: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict[str, object]:
        """What identifies this split, recorded beside the data and inside every model version."""
        parts = {"train": self.train, "validation": self.validation, "test": self.test}
        return {
            "seed": self.seed,
            "fractions": list(SPLIT_FRACTIONS),
            "counts": {
                name: {"spam": sum(s.label == SPAM for s in part), "pass": sum(s.label == PASS for s in part)}
                for name, part in parts.items()
            },
            "fingerprints": {name: fingerprint(part) for name, part in parts.items()},
            "dedup": dict(self.stats),
        }


def fingerprint(samples: Iterable[Sample]) -> str:
    """Order-independent digest of a set of samples, to check two runs used the same split."""
    digest = hashlib.sha256()
    for key in sorted(f"{s.label}\t{normalize(s.text)}" for s in samples):
        digest.update(key.encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Locating and fetching


def locate(source: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] = Paths.data_dir,
           *, url: str = PUBLIC_URL, sha256: str = PUBLIC_SHA256, progress: bool = True) -> Path:
    """Where the corpus is: ``source``, else ``$ANTISPAM_DATA``, else a verified download.

    A download lands in ``data_dir/msglog.tar.gz`` and is reused while its checksum matches.
    The commands resolve ``--data`` and ``$ANTISPAM_DATA`` through :class:`antispam.config.Paths`
    and pass the result as ``source``; reading the variable here too keeps library callers that
    pass None working the same way.
    """
    chosen = source or os.environ.get(ENV_VAR)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.exists():
            origin = f"--data or ${ENV_VAR}" if source else f"${ENV_VAR}"
            raise DataError(f"corpus not found at {path} (from {origin}); point it at msglog.tar.gz "
                            "or an unpacked folder holding msglog/msgpass.log.seg and msgspam.log.seg")
        return path
    target = Path(data_dir) / "msglog.tar.gz"
    if target.is_file() and sha256_file(target) == sha256:
        return target
    download(url, target, sha256, progress=progress)
    return target


def download(url: str, target: Path, sha256: str, *, progress: bool = True,
             timeout: float = 30.0) -> None:
    """Fetch ``url`` into ``target`` atomically, refusing it unless its sha256 matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, f"downloading {target.name}", progress)
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            bar.close()
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"could not download the corpus from {url}: {exc}. Without network access, download "
            f"msglog.tar.gz elsewhere and pass --data PATH or set {ENV_VAR}=PATH."
        ) from exc
    if digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: got sha256 {digest.hexdigest()}, expected {sha256}. "
            f"The file was discarded; retry, or pass a trusted copy with --data PATH or {ENV_VAR}."
        )
    os.replace(partial, target)


def _progress_bar(total: int | None, desc: str, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:  # optional: tqdm comes with the [train] extra, not the core install
        from antispam.progress import progress_bar

        return progress_bar(total or 0, desc, "B", enabled=enabled)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled)


# ---------------------------------------------------------------------------------------------
# Reading


def read_corpus(path: str | os.PathLike[str]) -> list[Sample]:
    """All messages of a corpus in the public layout, in file order, duplicates included."""
    path = Path(path)
    samples: list[Sample] = []
    for label, member in MEMBERS.items():
        name, raw = _read_member(path, member)
        samples.extend(Sample(text, label) for text in _decode_lines(name, raw))
    return samples


def _read_member(path: Path, member: str) -> tuple[str, bytes]:
    if path.is_dir():
        for candidate in (path / member, path / Path(member).name):
            if candidate.is_file():
                return str(candidate), candidate.read_bytes()
        raise DataError(f"{path / member} is missing: the corpus folder needs {', '.join(MEMBERS.values())}")
    try:
        with tarfile.open(path, "r:*") as tar:
            names = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
            info = names.get(member) or names.get(Path(member).name)
            if info is None:
                raise DataError(f"{path} has no member {member}; expected the layout of "
                                "tensorlayer/text-antispam (msglog/msgpass.log.seg, msglog/msgspam.log.seg)")
            fh = tar.extractfile(info)
            assert fh is not None
            return f"{path}:{member}", fh.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{path} is not a readable .tar.gz corpus: {exc}") from exc


def _decode_lines(name: str, raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{name} is not UTF-8 (line {line}, byte {exc.start}): re-encode it as UTF-8") from exc
    lines = [rebuild_raw(line) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{name} holds no messages")
    return lines


# ---------------------------------------------------------------------------------------------
# De-duplication and the split


def dedupe(samples: Iterable[Sample]) -> tuple[list[Sample], dict[str, int]]:
    """Drop exact duplicates (same normalized text) and texts carrying both labels.

    Duplicates are keyed on the normalized text, not the raw line: two pass lines that differ
    only in their digits become one text after masking and would otherwise leak across splits.
    A text seen under both labels cannot be learned either way, so every copy of it goes.
    """
    first: dict[str, Sample] = {}
    labels: dict[str, set[int]] = {}
    total = empty = 0
    for sample in samples:
        total += 1
        key = normalize(sample.text)
        if not key:
            empty += 1
            continue
        labels.setdefault(key, set()).add(sample.label)
        first.setdefault(key, sample)
    conflicting = {key for key, seen in labels.items() if len(seen) > 1}
    kept = [s for key, s in first.items() if key not in conflicting]
    stats = {
        "read": total,
        "empty_after_normalization": empty,
        "duplicates": total - empty - len(first),
        "conflicting_labels": len(conflicting),
        "kept": len(kept),
    }
    return kept, stats


def split_key(text: str, seed: int = SPLIT_SEED) -> str:
    return hashlib.sha1(f"{seed}\x00{normalize(text)}".encode("utf-8")).hexdigest()


def split(samples: Iterable[Sample], seed: int = SPLIT_SEED,
          fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> Split:
    """Stratified, seeded train/validation/test split of already de-duplicated samples."""
    parts: tuple[list[Sample], list[Sample], list[Sample]] = ([], [], [])
    by_label: dict[int, list[Sample]] = {}
    for sample in samples:
        by_label.setdefault(sample.label, []).append(sample)
    for label in sorted(by_label):
        ordered = sorted(by_label[label], key=lambda s: split_key(s.text, seed))
        n = len(ordered)
        cut1 = round(n * fractions[0])
        cut2 = round(n * (fractions[0] + fractions[1]))
        parts[0].extend(ordered[:cut1])
        parts[1].extend(ordered[cut1:cut2])
        parts[2].extend(ordered[cut2:])
    return Split(*parts, seed=seed)


def load_split(source: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] = Paths.data_dir,
               *, progress: bool = True) -> Split:
    """Locate, read, de-duplicate and split: what every training and evaluation command uses.

    The trainers then add the shipped everyday messages to ``train`` with
    :func:`antispam.everyday.with_everyday` (that module builds on this one, not the reverse).
    """
    path = locate(source, data_dir, progress=progress)
    kept, stats = dedupe(read_corpus(path))
    result = split(kept)
    result.stats = stats
    return result


def map_texts(samples: Iterable[Sample], fn: Callable[[str], object]) -> list[object]:
    return [fn(s.text) for s in samples]

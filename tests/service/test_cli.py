import json
import subprocess
import sys
from pathlib import Path


def antispam(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "antispam", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_help_lists_commands() -> None:
    out = antispam("--help")
    assert out.returncode == 0
    for name in ("data", "tokens"):
        assert name in out.stdout


def test_tokens_prints_one_line_per_text() -> None:
    out = antispam("tokens", "加我微信13800138000", "！！！")
    assert out.returncode == 0
    lines = out.stdout.split("\n")
    assert lines[0].split() == ["加", "我", "微信", "xxxxxxxxxxx"]
    assert lines[1] == ""  # nothing left after normalization


def test_tokens_reads_stdin() -> None:
    out = antispam("tokens", stdin="今天开会\n明天回家\n")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2


def test_data_records_split(tiny_corpus: Path, tmp_path: Path) -> None:
    out = antispam("data", "--data", str(tiny_corpus), "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "d" / "split.json").read_text(encoding="utf-8"))
    assert manifest["dedup"]["kept"] == 60
    assert manifest == json.loads(out.stdout)


def test_data_bad_source_is_a_clear_error(tmp_path: Path) -> None:
    out = antispam("data", "--data", str(tmp_path / "nope"), "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert "corpus not found" in out.stderr and "Traceback" not in out.stderr

"""Regenerate the ``*_pb2.py`` modules next to this file from its ``.proto`` files.

Run ``python -m antispam.backends.protos.generate`` after editing a .proto (needs grpcio-tools,
a dev dependency); ``--check`` only reports whether the committed modules are current, which is
what the test suite runs. The generated modules are committed so the service never needs
grpcio-tools, and they import nothing from TensorFlow.

No ``*_pb2_grpc.py`` is generated: the services live in TF Serving's package
(``tensorflow.serving``), so the backends call their method paths by name with
``channel.unary_unary`` instead of using stubs generated for our own package.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Protos import each other as "antispam/backends/protos/x.proto", so the include root is the
# folder holding the antispam package; generated modules then import
# "from antispam.backends.protos import x_pb2".
ROOT = HERE.parents[2]
PROTOS = sorted(HERE.glob("*.proto"))


def generated_names() -> list[str]:
    return [p.stem + suffix for p in PROTOS for suffix in ("_pb2.py", "_pb2.pyi")]


def compile_into(out_root: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/wrappers.proto
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        *(str(p.relative_to(ROOT)) for p in PROTOS),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see messages above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a generated module is stale or missing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        compile_into(Path(tmp))
        fresh = Path(tmp) / HERE.relative_to(ROOT)
        stale = [name for name in generated_names()
                 if not (HERE / name).is_file() or not filecmp.cmp(fresh / name, HERE / name, shallow=False)]
        if args.check:
            for name in stale:
                print(f"stale: {HERE / name}", file=sys.stderr)
            return 1 if stale else 0
        for name in generated_names():
            shutil.copyfile(fresh / name, HERE / name)
        print(f"wrote {len(generated_names())} files into {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

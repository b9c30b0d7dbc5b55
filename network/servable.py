"""Can a stock TF Serving build run this SavedModel? A list check over its graph.

TF Serving is a C++ server: it runs the ops TensorFlow registers in C++, and nothing that calls
back into Python. ``tf.py_function`` and ``tf.numpy_function`` export fine and even reload in a
Python process (the in-process backend would serve them), then fail in TF Serving at the first
request. Ops of a custom op library loaded into the exporting process are just as absent from a
stock build. So every export walks its SavedModel's graphs — the top-level nodes and every
function of the function library, where ``tf.function`` bodies live — and refuses both.

Reads ``saved_model.pb`` itself (no loading, no tracing), so it costs milliseconds.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

# Ops whose kernel calls a Python function: registered in every TensorFlow build, runnable only
# where a Python interpreter holds the function (never in TF Serving).
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
SAVED_MODEL_FILE = "saved_model.pb"


def _read(saved_model_dir: str | os.PathLike[str]) -> Any:
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    model.ParseFromString((Path(saved_model_dir) / SAVED_MODEL_FILE).read_bytes())
    return model


def graph_ops(saved_model_dir: str | os.PathLike[str]) -> Counter[str]:
    """How often each op type occurs in the SavedModel's graphs, function library included."""
    model = _read(saved_model_dir)
    ops: Counter[str] = Counter()
    for meta_graph in model.meta_graphs:
        graph = meta_graph.graph_def
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def unservable_ops(saved_model_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Op type → why a stock TF Serving build cannot run it; empty when it can run them all.

    A function of the library called as an op (``StatefulPartitionedCall`` names the function,
    but a graph can also call a library function by its own name) is not an unknown op.
    """
    from tensorflow.python.framework import op_def_registry

    model = _read(saved_model_dir)
    functions = {f.signature.name for mg in model.meta_graphs for f in mg.graph_def.library.function}
    problems: dict[str, str] = {}
    for op in sorted(graph_ops(saved_model_dir)):
        if op in PYTHON_OPS:
            problems[op] = "calls back into Python (tf.py_function / tf.numpy_function)"
        elif op not in functions and op_def_registry.get(op) is None:
            problems[op] = "not a TensorFlow op (a custom op library)"
    return problems

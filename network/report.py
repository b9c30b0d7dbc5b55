"""The training report: per-epoch curves and the test confusion matrix as PNG, scores as JSON.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no display, no
global backend switch), rendered to bytes and written atomically like every file others read.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from antispam.atomic import atomic_write_bytes, atomic_write_json

CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"
SCORES_FILE = "scores.json"


def _png(figure: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def curves_png(history: list[dict[str, Any]], title: str, best_epoch: int | None = None) -> bytes:
    """Training and validation loss, validation accuracy and F1 (spam), per epoch."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(10, 4))
    loss_axes, score_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [h["loss"] for h in history], marker="o", label="training loss")
    loss_axes.plot(epochs, [h["validation_loss"] for h in history], marker="o", label="validation loss")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("cross-entropy")
    score_axes.plot(epochs, [h["validation_accuracy"] for h in history], marker="o",
                    label="validation accuracy")
    score_axes.plot(epochs, [h["validation_f1"] for h in history], marker="o", label="validation F1 (spam)")
    score_axes.set_xlabel("epoch")
    score_axes.set_ylabel("score")
    for axes in (loss_axes, score_axes):
        if best_epoch:
            axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="kept epoch")
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend()
    figure.suptitle(title)
    return _png(figure)


def confusion_png(confusion: dict[str, int], title: str) -> bytes:
    """2×2 matrix, rows = true label, columns = predicted label, spam first (label 0)."""
    from matplotlib.figure import Figure

    cells = [[confusion["spam_as_spam"], confusion["spam_as_pass"]],
             [confusion["pass_as_spam"], confusion["pass_as_pass"]]]
    figure = Figure(figsize=(4.5, 4))
    axes = figure.subplots()
    image = axes.imshow(cells, cmap="Blues")
    figure.colorbar(image, ax=axes)
    peak = max(max(row) for row in cells) or 1
    for i, row in enumerate(cells):
        for j, count in enumerate(row):
            axes.text(j, i, str(count), ha="center", va="center",
                      color="white" if count > peak / 2 else "black", fontsize=14)
    axes.set_xticks([0, 1], labels=["spam", "pass"])
    axes.set_yticks([0, 1], labels=["spam", "pass"])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return _png(figure)


def write_report(out_dir: str | os.PathLike[str], summary: dict[str, Any]) -> dict[str, Path]:
    """Write the three files for one training run; ``summary`` as from ``TrainedClassifier.summary``
    (plus whatever the caller adds: version, baselines, export size)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = summary.get("model", "model")
    version = summary.get("version")
    label = f"{name} v{version}" if version is not None else str(name)
    paths = {"curves": out / CURVES_FILE, "confusion": out / CONFUSION_FILE, "scores": out / SCORES_FILE}
    if summary.get("history"):
        atomic_write_bytes(paths["curves"], curves_png(summary["history"], f"{label}: training",
                                                       summary.get("best_epoch")))
    else:
        del paths["curves"]
    test = summary.get("test") or {}
    if "confusion" in test:
        atomic_write_bytes(paths["confusion"], confusion_png(
            test["confusion"], f"{label}: test split (n={test.get('count', '?')})"))
    else:
        del paths["confusion"]
    atomic_write_json(paths["scores"], summary)
    return paths

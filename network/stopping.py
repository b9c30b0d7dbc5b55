"""When training stops and when its learning rate shrinks: early stopping on the selection
score, a learning-rate plateau, and a wall-time budget, decided once per epoch.

Pure Python (no TensorFlow) so the rules are tested on their own and the epoch loop
(:func:`antispam.network.train.train_classifier`) only asks and acts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochVerdict:
    """What the loop does after an epoch."""

    improved: bool  # the best so far: keep its weights
    shrink_learning_rate: bool  # multiply the learning rate by the plateau factor
    stop: str | None  # why training stops now (None: go on)


class StoppingPolicy:
    """Early stopping after ``patience`` epochs without a better key, the learning rate times
    ``plateau_factor`` after each such epoch (1: off), and a stop after the epoch that crosses
    ``max_seconds`` (None: no limit).

    A key is compared as a tuple, higher is better; the trainer passes
    ``(selection F1, -selection loss)``, so the loss breaks ties between equal F1s.
    """

    def __init__(self, patience: int, plateau_factor: float = 1.0, max_seconds: float | None = None) -> None:
        if patience < 1:
            raise ValueError("patience must be at least 1")
        self.patience = patience
        self.plateau_factor = plateau_factor
        self.max_seconds = max_seconds
        self.best: tuple[float, ...] | None = None
        self.best_epoch = 0
        self.stale = 0

    def after_epoch(self, epoch: int, key: tuple[float, ...], elapsed_seconds: float) -> EpochVerdict:
        """Record epoch ``epoch``'s key (``elapsed_seconds`` since training started)."""
        improved = self.best is None or key > self.best
        if improved:
            self.best, self.best_epoch, self.stale = key, epoch, 0
        else:
            self.stale += 1
        # Smaller steps once validation stops improving: the next epochs refine rather than overshoot.
        shrink = not improved and self.plateau_factor < 1.0
        stop = None
        if self.stale >= self.patience:
            stop = f"no better validation (selection) F1 for {self.patience} epochs"
        elif self.max_seconds is not None and elapsed_seconds > self.max_seconds:
            stop = f"time budget of {self.max_seconds:g} s reached"
        return EpochVerdict(improved, shrink, stop)

"""Label contract shared by trainer, model and service (docs/contracts.md#labels).

The original service answered ``predict: 0`` for spam and ``1`` for pass; moderation backends
depend on it, so the numbers never change. Output column 0 of the model is spam.
"""

SPAM = 0
PASS = 1
NAMES = {SPAM: "spam", PASS: "pass"}
BY_NAME = {name: value for value, name in NAMES.items()}


def label_name(value: int) -> str:
    return NAMES[int(value)]


def parse_label(value: object) -> int:
    """Accept ``"spam"``/``"pass"`` or ``0``/``1``; raise ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("label must be 'spam', 'pass', 0 or 1")
    if isinstance(value, str) and value.strip().lower() in BY_NAME:
        return BY_NAME[value.strip().lower()]
    if isinstance(value, int) and value in NAMES:
        return value
    raise ValueError("label must be 'spam', 'pass', 0 or 1")

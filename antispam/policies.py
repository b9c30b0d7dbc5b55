"""Named policies (docs/contracts.md#policies): per use case, the thresholds and the term lists.

A request picks one with ``policy=`` (query or body); without it, ``default``. The policies file
(``ANTISPAM_POLICIES_FILE``) is JSON::

    {
      "default":  {"review_threshold": 0.5, "block_threshold": 0.9},
      "comments": {"review_threshold": 0.6, "block_threshold": 0.95, "lists": ["default", "comments"]},
      "usernames": {"block_threshold": 0.8, "min_tokens_to_block": 0}
    }

Every field is optional: thresholds and ``min_tokens_to_block`` default to the service's
settings, ``lists`` to ``["default", <name>]`` (the shared lists and the policy's own, see
:mod:`antispam.lists`). Without a file, or when the file has no ``default``, ``default`` is the
service's thresholds with the ``default`` lists. The file is read at start; a bad file stops the
start with a message naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antispam.errors import UserError
from antispam.lists import DEFAULT_SET

DEFAULT_POLICY = "default"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FIELDS = {"review_threshold", "block_threshold", "min_tokens_to_block", "lists"}


@dataclass(frozen=True)
class Policy:
    name: str
    review_threshold: float
    block_threshold: float
    min_tokens_to_block: int
    lists: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"review_threshold": self.review_threshold, "block_threshold": self.block_threshold,
                "min_tokens_to_block": self.min_tokens_to_block, "lists": list(self.lists)}


def default_policy(review: float, block: float, min_tokens: int) -> Policy:
    return Policy(DEFAULT_POLICY, review, block, min_tokens, (DEFAULT_SET,))


def parse_policies(data: Any, review: float, block: float, min_tokens: int,
                   source: str = "policies") -> dict[str, Policy]:
    if not isinstance(data, dict):
        raise UserError(f"{source}: must be a JSON object of policy name -> settings")
    out: dict[str, Policy] = {}
    for name, spec in data.items():
        where = f"{source}: policy {name!r}"
        if not _NAME.fullmatch(name):
            raise UserError(f"{where}: names are 1-64 letters, digits, _ or -")
        if not isinstance(spec, dict):
            raise UserError(f"{where}: must be an object")
        unknown = set(spec) - _FIELDS
        if unknown:
            raise UserError(f"{where}: unknown fields {sorted(unknown)}; known: {sorted(_FIELDS)}")
        r, b = spec.get("review_threshold", review), spec.get("block_threshold", block)
        m = spec.get("min_tokens_to_block", min_tokens)
        for field_name, value in (("review_threshold", r), ("block_threshold", b)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{where}: {field_name} must be a number")
        if not 0.0 <= r <= b <= 1.0:
            raise UserError(f"{where}: thresholds must satisfy 0 <= review_threshold <= block_threshold <= 1")
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise UserError(f"{where}: min_tokens_to_block must be an integer >= 0")
        default_lists = [DEFAULT_SET] if name == DEFAULT_POLICY else [DEFAULT_SET, name]
        lists = spec.get("lists", default_lists)
        if not isinstance(lists, list) or not all(isinstance(x, str) and _NAME.fullmatch(x) for x in lists):
            raise UserError(f"{where}: lists must be a list of list-set names")
        out[name] = Policy(name, float(r), float(b), int(m), tuple(lists))
    if DEFAULT_POLICY not in out:
        out[DEFAULT_POLICY] = default_policy(review, block, min_tokens)
    return out


def load_policies(path: str | None, review: float, block: float, min_tokens: int) -> dict[str, Policy]:
    """The policies of ``path`` (JSON), or only ``default`` when ``path`` is unset."""
    if not path:
        return {DEFAULT_POLICY: default_policy(review, block, min_tokens)}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"policies file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"policies file {path}: not valid JSON: {exc}") from None
    return parse_policies(data, review, block, min_tokens, f"policies file {path}")

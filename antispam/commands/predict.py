"""``antispam predict TEXT...``: score texts from the command line, one JSON line each.

By default the newest version under ``<model-base>/<model-name>/`` is loaded in this process
(the same code path as the service: :class:`antispam.scoring.Scorer` over a
:class:`~antispam.backends.local.LocalBackend`); with ``--url`` the texts go to a running
service instead. Either way each line has the shape of one ``data`` item of ``/predict``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable, Iterator

from antispam.config import ServeConfig, add_arguments, check_serve_config, resolve
from antispam.errors import UserError

CHUNK = 100  # texts per backend call / HTTP request (the service's default max_texts)
LOCAL_FLAGS = ("model_base", "model_name", "block_threshold", "review_threshold", "min_tokens_to_block",
               "deadline_ms", "lists_dir", "policies_file")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="score texts: one JSON line each (local model, or --url of a running service)",
        description="Score each TEXT and print one JSON line per text with the fields of the "
        "/predict response (predict: 0 spam, 1 pass; label; spam_probability; suggestion; model). "
        "With no TEXT, reads one text per line from standard input. Loads the newest version "
        "under --model-base/--model-name in-process unless --url names a running service.",
    )
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--url", help="base URL of a running service, e.g. http://127.0.0.1:8000")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the service with --url (default 30)")
    p.add_argument("--policy", default=None,
                   help="named policy: thresholds and term lists (docs/contracts.md#policies)")
    p.add_argument("--explain", action="store_true",
                   help="add reasons: the spans that carry the verdict (docs/contracts.md#explanations)")
    p.add_argument("--contacts", action="store_true",
                   help="add contacts: phones, QQ, WeChat ids, links, e-mail (docs/contracts.md#contacts)")
    add_arguments(p, ServeConfig, only=LOCAL_FLAGS)
    p.set_defaults(run=run)


def chunks(texts: Iterable[str], size: int = CHUNK) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(args: argparse.Namespace) -> int:
    texts: Iterable[str] = args.texts or (line.rstrip("\n") for line in sys.stdin)
    options = {"policy": args.policy, "explain": args.explain, "contacts": args.contacts}
    if args.url:
        lines = predict_remote(args.url.rstrip("/"), texts, args.timeout, options)
    else:
        config = resolve(ServeConfig, args, poll_seconds=0.0)
        lines = predict_local(config, texts, options)
    for item in lines:
        print(json.dumps(item, ensure_ascii=False), flush=True)
    return 0


def predict_remote(url: str, texts: Iterable[str], timeout: float,
                   options: dict[str, Any] | None = None) -> Iterator[dict]:
    import urllib.error
    import urllib.request

    options = {k: v for k, v in (options or {}).items() if v}
    for batch in chunks(texts):
        request = urllib.request.Request(
            f"{url}/predict", data=json.dumps({"texts": batch, **options}, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise UserError(f"{url} answered {exc.code}: {_error_message(exc.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"cannot reach {url}: {reason}") from None
        yield from payload["data"]


def _error_message(body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


def predict_local(config: ServeConfig, texts: Iterable[str],
                  options: dict[str, Any] | None = None) -> Iterator[dict]:
    import asyncio

    from antispam.backends.factory import require_local
    from antispam.backends.local import LocalBackend
    from antispam.cache import PredictionCache
    from antispam.errors import ApiError
    from antispam.scoring import Scorer
    from antispam.text import Segmenter

    check_serve_config(config)
    require_local()  # without TensorFlow: what to install, not a traceback (or use --url)
    backend = LocalBackend(config)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(backend.start())
        if not backend.ready:
            raise UserError(f"no usable model version under {backend.model_dir} "
                            "(train one with `antispam train cnn`, or give --model-base)")
        scorer = Scorer(config, backend, Segmenter(), PredictionCache(0))
        explain = bool((options or {}).get("explain"))
        contacts = bool((options or {}).get("contacts"))
        try:
            policy = scorer.policy((options or {}).get("policy"))
        except ApiError as exc:
            raise UserError(exc.message) from None
        for batch in chunks(texts):
            try:
                normalized = scorer.normalize_all(batch, "text")
            except ApiError as exc:
                raise UserError(exc.message) from None
            try:
                yield from loop.run_until_complete(scorer.score(batch, normalized, policy=policy,
                                                                explain=explain, contacts=contacts))
            except Exception as exc:  # a BackendError here is a CLI failure, not a traceback
                from antispam.backends.base import BackendError

                if isinstance(exc, BackendError):
                    raise UserError(f"the model did not answer: {exc}") from None
                raise
    finally:
        loop.run_until_complete(backend.close())
        loop.close()

"""``antispam feedback``: list, export or delete feedback rows by key id or time range.

``antispam feedback prune`` is the retention, on a schedule of its own (compose's
``feedback-prune`` service, the k8s CronJob ``antispam-feedback-prune``; issue 21): it deletes
rows last seen more than ``--feedback-retention-days`` ago and rewrites the promotion logs under
``--model-base`` so that no line quotes a feedback text (a hash and a redacted excerpt instead).
It is the decision log's retention too (issue 23): decisions older than
``--decision-retention-days`` are deleted, and texts past ``--decision-text-days`` (or their own
window) are erased, the hash kept.

For an operator cleaning up after an abusive client: ``antispam feedback list --key mallory``
shows what a key sent, ``export`` writes the rows as JSON Lines (to keep a copy), ``delete``
removes them, ``reassign --to KEY_ID`` records them as sent by that key id (to vouch for rows
stored before senders were recorded, which are ``anonymous``) (``--yes`` required; a key id or a
time range is required). Times are ISO 8601
(``2026-11-29`` or ``2026-11-29T10:00:00``, UTC unless they say otherwise) or unix seconds; a row
is in the range if it was seen during it (``--since``: last seen at or after; ``--until``: first
seen before).

``antispam feedback approve`` lists the corpus label flips retrain held because they were over
the cap per night or per key (issue 21); ``approve ID [ID ...] [--by NAME]`` approves them (who and
when are recorded; the next retrain applies them).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import sys
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    from antispam.config import ServeConfig, add_arguments

    p = sub.add_parser("feedback", help="list, export or delete feedback rows (by key id or time); "
                       "approve held label flips",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    add_arguments(p, ServeConfig, only=("feedback_db",))
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    prune = actions.add_parser("prune", help="retention: delete rows older than the retention and "
                               "redact feedback texts in the promotion logs (run it daily)")
    add_arguments(prune, ServeConfig, only=("feedback_retention_days", "decision_retention_days",
                                            "decision_text_days", "model_base"))
    prune.add_argument("--model", action="append", dest="models", metavar="NAME",
                       help="promotion log of MODEL_BASE/NAME to redact (repeatable; default: every "
                       "model folder with a promotion.jsonl)")
    for name, text in (("list", "one line per row: id, key id, label, count, last seen, text"),
                       ("export", "the rows as JSON Lines on standard output"),
                       ("delete", "delete the rows (needs --yes and a key id or time range)"),
                       ("reassign", "record the rows as sent by --to KEY_ID, e.g. to vouch for rows "
                        "stored before senders were recorded (anonymous); needs --yes")):
        a = actions.add_parser(name, help=text)
        a.add_argument("--key", dest="key_id", metavar="KEY_ID", help="only rows sent with this key id")
        a.add_argument("--since", metavar="TIME", help="only rows last seen at or after TIME")
        a.add_argument("--until", metavar="TIME", help="only rows first seen before TIME")
        if name in ("delete", "reassign"):
            a.add_argument("--yes", action="store_true", help="really do it")
        if name == "reassign":
            a.add_argument("--to", required=True, metavar="KEY_ID", help="the key id the rows get")
    approve = actions.add_parser(
        "approve", help="list the label flips held over the cap, or approve some by id",
        description="Without ids: list the corpus label flips retrain held because they were over the "
        "cap per night or per key (id, label now -> label wanted, key ids, held since, text). With ids: "
        "approve them; the next retrain applies them. Who approved and when are recorded.")
    approve.add_argument("ids", nargs="*", type=int, metavar="ID", help="flip ids to approve")
    approve.add_argument("--by", default=None, metavar="NAME",
                         help="who approves (default: the login name); recorded with the time")
    approve.add_argument("--all", dest="show_all", action="store_true",
                         help="list every flip in the ledger (applied, approved, pending), not only held ones")
    p.set_defaults(run=run)


def approve(store: Any, args: argparse.Namespace) -> int:
    """``antispam feedback approve``: list the held flips, or approve the given ids."""
    import getpass

    from antispam.errors import UserError
    from antispam.labels import NAMES

    if not args.ids:
        flips = store.flips(status=None if args.show_all else "pending")
        if not flips:
            print("no label flips are waiting for approval" if not args.show_all else "no label flips recorded")
        for flip in flips:
            text = flip.text if flip.text is not None else "(feedback rows deleted)"
            text = text if len(text) <= 60 else text[:60] + "..."
            who = f"\t{flip.approved_by} {_iso(flip.approved_at)}" if flip.approved_by and flip.approved_at else ""
            print(f"{flip.id}\t{flip.status}\t{NAMES[flip.corpus_label]} -> {NAMES[flip.label]}\t"
                  f"{','.join(flip.key_ids)}\t{_iso(flip.decided_at)}\t{text}{who}")
        return 0
    try:
        by = (args.by or getpass.getuser()).strip()
    except (KeyError, OSError):
        by = ""
    if not by:
        raise UserError("say who approves: --by NAME")
    refused = store.approve_flips(args.ids, by)
    done = [i for i in args.ids if i not in refused]
    if done:
        print(f"approved {len(done)} label flips ({', '.join(map(str, done))}) as {by}; the next retrain "
              "applies them")
    if refused:
        print(f"not pending (unknown, or already applied or approved): {', '.join(map(str, refused))}",
              file=sys.stderr)
        return 1
    return 0


def parse_time(value: str | None) -> float | None:
    from antispam.errors import UserError

    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{value!r} is not a time: use ISO 8601 (2026-11-29T10:00) or unix seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp()


def _iso(stamp: float) -> str:
    return _dt.datetime.fromtimestamp(stamp, _dt.timezone.utc).isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> int:
    from antispam.config import ServeConfig, resolve
    from antispam.errors import UserError
    from antispam.feedback import FeedbackError, redact
    from antispam.feedback_stores import exists, open_store
    from antispam.labels import NAMES

    if args.action == "prune":
        return prune(args)
    config = resolve(ServeConfig, args, only=("feedback_db",))
    if not exists(config.feedback_db):
        raise UserError(f"no feedback store at {config.feedback_db!r} (--feedback-db)")
    try:  # a SQLite file, or PostgreSQL for a postgresql:// URL (issue 23)
        store = open_store(config.feedback_db)
    except FeedbackError as exc:
        raise UserError(str(exc)) from None
    where_store = redact(config.feedback_db)
    if args.action == "approve":
        try:
            return approve(store, args)
        except FeedbackError as exc:
            raise UserError(str(exc)) from None
        finally:
            store.close()
    where = {"key_id": args.key_id, "since": parse_time(args.since), "until": parse_time(args.until)}
    try:
        if args.action in ("delete", "reassign"):
            if all(v is None for v in where.values()):
                raise UserError(f"{args.action} needs --key or --since/--until (never the whole store)")
            if not args.yes:
                count = len(store.rows(**where))
                print(f"would {args.action} {count} rows; add --yes to do it", file=sys.stderr)
                return 1
            if args.action == "delete":
                print(f"deleted {store.delete(**where)} rows from {where_store}")
            else:
                print(f"reassigned {store.reassign(args.to, **where)} rows to key id {args.to} in "
                      f"{where_store}")
            return 0
        for row in store.rows(**where):
            if args.action == "export":
                record = dataclasses.asdict(row)
                record["label"] = NAMES[row.label]
                print(json.dumps(record, ensure_ascii=False, sort_keys=True))
            else:
                text = row.text if len(row.text) <= 60 else row.text[:60] + "..."
                print(f"{row.id}\t{row.key_id}\t{NAMES[row.label]}\t{row.count}\t{_iso(row.last_seen)}\t{text}")
    except FeedbackError as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    return 0


def prune(args: argparse.Namespace) -> int:
    """``antispam feedback prune``: the store's retention, then the promotion logs redacted.

    A missing store is not an error (nothing to prune yet: a fresh install). A promotion log
    whose model folder a retrain holds is left for the next run (the run appends to it), and the
    exit code is then 4, like a busy retrain, so a scheduler can tell."""
    from pathlib import Path

    from antispam.config import ServeConfig, resolve
    from antispam.errors import UserError
    from antispam.feedback import FeedbackError, redact
    from antispam.feedback_stores import exists, open_store
    from antispam.lock import FileLock, LockBusy
    from antispam.privacy import scrub_log
    from antispam.retrain import LOCK_FILE, LOG_FILE
    from antispam.review_stores import review_queue_for

    config = resolve(ServeConfig, args, only=("feedback_db", "feedback_retention_days", "decision_retention_days",
                                              "decision_text_days", "model_base"))
    for name in ("feedback_retention_days", "decision_retention_days", "decision_text_days"):
        if getattr(config, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0 (0: keep every row)")
    if exists(config.feedback_db):
        try:
            store = open_store(config.feedback_db)
            try:
                deleted = store.prune(config.feedback_retention_days)
                decisions, texts = store.prune_decisions(config.decision_retention_days,
                                                         config.decision_text_days)
                review = review_queue_for(store)  # issue 23: decided review items, same settings
                items, item_texts = review.prune(config.decision_retention_days, config.decision_text_days) \
                    if review is not None else (0, 0)
            finally:
                store.close()
        except FeedbackError as exc:
            raise UserError(str(exc)) from None
        kept = (f"rows last seen more than {config.feedback_retention_days:g} days ago"
                if config.feedback_retention_days > 0 else "nothing (retention 0: keep every row)")
        print(f"{redact(config.feedback_db)}: deleted {deleted} rows; the retention deletes {kept}")
        older = (f"older than {config.decision_retention_days:g} days" if config.decision_retention_days > 0
                 else "none (retention 0)")
        print(f"{redact(config.feedback_db)}: deleted {decisions} decisions ({older}) and erased {texts} "
              f"decision texts (older than {config.decision_text_days:g} days or past their window)")
        print(f"{redact(config.feedback_db)}: deleted {items} decided review items ({older}) and erased "
              f"{item_texts} texts of decided review items (reviewed more than {config.decision_text_days:g} "
              "days ago; queued items keep theirs)")
    else:
        print(f"no feedback store at {redact(config.feedback_db)!r}: nothing to delete")
    base = Path(config.model_base)
    folders = ([base / name for name in args.models] if args.models
               else sorted(p.parent for p in base.glob(f"*/{LOG_FILE}")))
    busy = 0
    for folder in folders:
        log_path = folder / LOG_FILE
        try:
            with FileLock(folder / LOCK_FILE, what=f"feedback prune of {folder}"):
                changed = scrub_log(log_path)
        except LockBusy as exc:
            busy += 1
            print(f"{log_path}: not redacted now, {exc}", file=sys.stderr)
            continue
        except OSError as exc:
            raise UserError(f"{log_path}: {exc.strerror or exc}") from None
        print(f"{log_path}: {changed} lines redacted" if log_path.is_file() else f"{log_path}: no log")
    return 4 if busy else 0

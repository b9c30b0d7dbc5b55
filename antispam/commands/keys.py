"""``antispam keys``: manage the API keys file (docs/operations.md#api-keys).

``antispam keys add KEY_ID --roles predict,feedback [--rate 10]`` makes a random key, appends
``key_id<TAB>sha256(key)<TAB>roles<TAB>rate`` to the keys file atomically (a running service
picks it up within ``keys_poll_seconds``) and prints the key once: it is stored nowhere.
``antispam keys list`` shows key ids, roles and rates (never a hash or a key); on an invalid file
it names the problem and exits 2, so it also checks a file before it is deployed.
``antispam keys revoke KEY_ID`` removes the key's line; ``antispam keys rotate KEY_ID`` gives the
id a new key (printed once) and keeps its roles and rate. ``antispam keys callback KEY_ID --url
URL`` sets where appeal outcomes for that key are posted, with a new shared secret printed once
(``--off`` removes it; issue 23). Both rewrite the file atomically; a
running service stops accepting the old key within ``keys_poll_seconds``, without a restart.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="add, list, revoke or rotate API keys in the keys file",
                       description="Manage the API keys file (ANTISPAM_KEYS_FILE): add a key "
                       "(printed once, stored hashed), list key ids and roles, revoke a key or rotate "
                       "it (a new key for the same id, roles and rate, printed once).")
    p.add_argument("--keys-file", metavar="PATH", default=None,
                   help="the keys file (env ANTISPAM_KEYS_FILE)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a key, append its hash, print the key once")
    add.add_argument("key_id", metavar="KEY_ID", help="a name for the key (letters, digits, _ . @ -)")
    add.add_argument("--roles", default="predict",
                     help="comma-separated: predict, feedback, labeler, viewer, admin (default "
                     "%(default)s; admin implies predict, feedback and viewer, not labeler)")
    add.add_argument("--rate", type=float, default=10.0,
                     help="requests per second (burst: twice that; default %(default)s)")
    actions.add_parser("list", help="key ids, roles and rates (exit 2 if the file is invalid)")
    revoke = actions.add_parser("revoke", help="remove a key; the service stops accepting it without a restart")
    revoke.add_argument("key_id", metavar="KEY_ID")
    rotate = actions.add_parser("rotate", help="give a key id a new key (printed once), same roles and rate")
    rotate.add_argument("key_id", metavar="KEY_ID")
    callback = actions.add_parser("callback", help="where appeal outcomes for this key are posted (issue 23): "
                                  "a URL and a new shared secret, printed once; --off removes it")
    callback.add_argument("key_id", metavar="KEY_ID")
    where = callback.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="http:// or https:// URL the signed outcome is POSTed to")
    where.add_argument("--off", action="store_true", help="no callbacks for this key any more")
    p.set_defaults(run=run)


def keys_file(args: argparse.Namespace) -> str:
    from antispam.errors import UserError
    from antispam.keys import ENV_VAR

    path = args.keys_file or os.environ.get(ENV_VAR, "")
    if not path:
        raise UserError(f"give --keys-file or set {ENV_VAR}")
    return str(path)


def run(args: argparse.Namespace) -> int:
    from antispam.keys import add_key, load_keys, revoke_key, rotate_key, set_callback

    path = keys_file(args)
    if args.action == "callback":
        secret = set_callback(path, args.key_id, None if args.off else args.url)
        if secret is None:
            print(f"key id {args.key_id} has no callback any more in {path}", file=sys.stderr)
            return 0
        print(secret)
        print(f"key id {args.key_id} posts appeal outcomes to {args.url}, signed with the secret above "
              "(shown only now; give it to the client: docs/contracts.md#appeals says how to verify)",
              file=sys.stderr)
        return 0
    if args.action == "revoke":
        gone = revoke_key(path, args.key_id)
        print(f"revoked key id {gone.key_id} ({','.join(sorted(gone.roles))}) in {path}; a running service "
              "refuses it from its next check of the file (keys_poll_seconds)")
        return 0
    if args.action == "rotate":
        key, entry = rotate_key(path, args.key_id)
        print(key)
        print(f"rotated key id {entry.key_id} ({','.join(sorted(entry.roles))}, {entry.rate:g}/s) in {path}; "
              "the key above is shown only now and the old one stops working at the service's next "
              "check of the file", file=sys.stderr)
        return 0
    if args.action == "add":
        roles = [r.strip() for r in args.roles.split(",") if r.strip()]
        key = add_key(path, args.key_id, roles, args.rate)
        print(key)
        print(f"added key id {args.key_id} ({','.join(roles)}, {args.rate:g}/s) to {path}; the key "
              "above is shown only now", file=sys.stderr)
        return 0
    for entry in sorted(load_keys(path).values(), key=lambda k: k.key_id):
        callback = f"\tcallback {entry.callback_url}" if entry.callback_url else ""
        print(f"{entry.key_id}\t{','.join(sorted(entry.roles))}\t{entry.rate:g}{callback}")
    return 0

"""``antispam keys``: manage the API keys file (docs/operations.md#api-keys).

``antispam keys add KEY_ID --roles predict,feedback [--rate 10]`` makes a random key, appends
``key_id<TAB>sha256(key)<TAB>roles<TAB>rate`` to the keys file atomically (a running service
picks it up within ``keys_poll_seconds``) and prints the key once: it is stored nowhere.
``antispam keys list`` shows key ids, roles and rates (never a hash or a key).
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="add or list API keys in the keys file",
                       description="Manage the API keys file (ANTISPAM_KEYS_FILE): add a key "
                       "(printed once, stored hashed) or list key ids and roles.")
    p.add_argument("--keys-file", metavar="PATH", default=None,
                   help="the keys file (env ANTISPAM_KEYS_FILE)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a key, append its hash, print the key once")
    add.add_argument("key_id", metavar="KEY_ID", help="a name for the key (letters, digits, _ . @ -)")
    add.add_argument("--roles", default="predict",
                     help="comma-separated: predict, feedback, admin (default %(default)s)")
    add.add_argument("--rate", type=float, default=10.0,
                     help="requests per second (burst: twice that; default %(default)s)")
    actions.add_parser("list", help="key ids, roles and rates")
    p.set_defaults(run=run)


def keys_file(args: argparse.Namespace) -> str:
    from antispam.errors import UserError
    from antispam.keys import ENV_VAR

    path = args.keys_file or os.environ.get(ENV_VAR, "")
    if not path:
        raise UserError(f"give --keys-file or set {ENV_VAR}")
    return str(path)


def run(args: argparse.Namespace) -> int:
    from antispam.keys import add_key, load_keys

    path = keys_file(args)
    if args.action == "add":
        roles = [r.strip() for r in args.roles.split(",") if r.strip()]
        key = add_key(path, args.key_id, roles, args.rate)
        print(key)
        print(f"added key id {args.key_id} ({','.join(roles)}, {args.rate:g}/s) to {path}; the key "
              "above is shown only now", file=sys.stderr)
        return 0
    for entry in sorted(load_keys(path).values(), key=lambda k: k.key_id):
        print(f"{entry.key_id}\t{','.join(sorted(entry.roles))}\t{entry.rate:g}")
    return 0

"""``antispam bench --replay``: build the trace, start the services, replay, judge, report.

Two services of the same kind (``--scenarios``, default ``local-1w``) are started on 127.0.0.1:

* ``off``: ``antispam serve`` as it runs by default, sent every message *without* ``sender_id``
  (a service observes no text without one: no contact extraction, no signature, no tracker);
* ``on``: the same, with campaign detection configured (:func:`campaign_env`: the window is the
  simulated window over the speedup, the ``default`` policy acts on campaign evidence with
  ``--replay-action``), sent every message with its ``sender_id``.

Both get a few seconds of unrecorded warm-up (the *training* half of the everyday messages, each
once), then the trace, every message to both at the same moment, while each one's process tree
is sampled for CPU. With ``--url`` the trace goes to that one service (named ``url``, with
sender ids) and nothing is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from antispam.bench import procstats, replay, replay_drive, replay_report, report, scenarios
from antispam.bench.load import loopback_address


def campaign_env(window_s: float, policies_file: Path, action: str, min_senders: int | None) -> dict[str, str]:
    """The ``on`` service's settings: the campaign window (wall seconds), the policies file whose
    ``default`` policy acts on campaigns with ``action``, and ``min_senders`` if given."""
    from antispam.atomic import atomic_write_json

    atomic_write_json(policies_file, {"default": {"campaign": action}})
    env = {"ANTISPAM_CAMPAIGN_WINDOW_S": f"{window_s:g}", "ANTISPAM_POLICIES_FILE": str(policies_file)}
    if min_senders is not None:
        env["ANTISPAM_CAMPAIGN_MIN_SENDERS"] = str(min_senders)
    return env


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def material(settings: dict[str, Any]) -> tuple[list[Any], list[str], list[str]]:
    """The samples and everyday messages of the trace, and the ordinary chat campaign copies
    may quote (the other everyday part, sent by nobody in the trace): the test split and the
    held-out everyday messages, or (``split: validation``, for choosing settings without looking
    at the test figures) the validation split and the everyday training part."""
    from antispam import everyday
    from antispam.data import load_split

    split = load_split(settings["data"], settings["data_dir"], progress=False)
    held, train = [row.text for row in everyday.held_out_part()], [row.text for row in everyday.training_part()]
    if settings.get("split", "test") == "validation":
        return list(split.validation), train, held
    return list(split.test), held, train


def build_trace(settings: dict[str, Any], samples: list[Any], everyday_texts: list[str], context: list[str],
                ad_pool: list[str] | None = None) -> replay.Trace:
    config = replay.ReplayConfig(seed=settings["seed"], span_minutes=settings["span_minutes"],
                                 campaigns=settings["campaigns"])
    return replay.generate(samples, everyday_texts, config, ad_pool=ad_pool, context=context)


def run_replay(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from antispam import everyday

    started = _dt.datetime.now()
    json_path = Path(args.json_path) if args.json_path else report.default_json_path(started).with_name(
        f"replay-{started:%Y%m%d-%H%M%S}.json")
    from antispam.labels import SPAM

    samples, everyday_texts, context = material(settings)
    span = settings["span_minutes"] * 60.0
    wall = span / settings["speedup"]
    warm = [row.text for row in everyday.training_part()]
    ad_info: dict[str, Any] = {"ads": settings["ads"]}
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="antispam-replay-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        targets: dict[str, tuple[str, int | None]] = {}
        if args.url:
            targets["url"] = (args.url, procstats.listening_pid(loopback_address(args.url)[1]))
        else:
            service = scenarios.SERVICES[settings["scenario"]]
            cache_size = 20000 if settings["cache"] else 0
            on_env = campaign_env(settings["service_window_s"], workdir / "policies.json", settings["action"],
                                  settings["min_senders"])
            for name, env in (("off", {}), ("on", on_env)):
                say(f"starting {service.name} with campaign detection {name} ...")
                proc = stack.enter_context(scenarios.ServiceProcess(
                    service, model_base=settings["model_base"], model_name=settings["model_name"],
                    workdir=workdir / name, cache_size=cache_size,
                    extra_args=("--lists-dir", str(workdir / "no-lists")), env=env))
                targets[name] = (proc.url, proc.pid)
        urls = {name: url for name, (url, _pid) in targets.items()}
        say(f"warming up for {settings['warmup_s']:g} s ...")
        asyncio.run(replay_drive.warm_up(urls, warm, settings["warmup_s"], settings["timeout"]))
        ad_pool = None
        if settings["ads"] == "missed":
            # Adverts the model alone lets through: asked of the off service (or the --url one).
            candidates = list(dict.fromkeys(s.text for s in samples if s.label == SPAM and 20 <= len(s.text) <= 150))
            ad_pool = asyncio.run(replay_drive.passing(urls.get("off", next(iter(urls.values()))), candidates,
                                                       settings["timeout"]))
            ad_info.update(candidates=len(candidates), passed=len(ad_pool))
            say(f"{len(ad_pool)} of {len(candidates)} candidate adverts pass the model alone; campaigns use those")
        trace = build_trace(settings, samples, everyday_texts, context, ad_pool)
        counts = trace.counts()
        say(f"trace: {len(trace.messages)} messages ({', '.join(f'{k} {v}' for k, v in counts.items())}) over "
            f"{settings['span_minutes']:g} simulated minutes, replayed in {wall:.0f} s "
            f"({len(trace.messages) / wall:.0f} messages/s per service); campaign window {settings['window_s']:g} "
            f"simulated s = {settings['service_window_s']:g} s of the services' clock")
        samplers = {name: procstats.Sampler(pid).start() for name, (_url, pid) in targets.items() if pid}
        say("replaying ...")
        try:
            answers, took = replay_drive.run_replay(trace, urls, speedup=settings["speedup"],
                                                    timeout=settings["timeout"], connections=settings["connections"],
                                                    without_sender=("off",))
        finally:
            usage = {name: sampler.stop() for name, sampler in samplers.items()}
        load_after = os.getloadavg()
        host = {name: u.host_cpu_percent for name, u in usage.items()}
        for name in targets:
            row = replay_drive.judge(trace, answers[name])
            use = usage.get(name)
            row["service_cpu_percent"] = use.cpu_percent if use else None
            row["service_rss_mb"] = use.rss_mb if use else None
            window = samplers[name].samples[-1].at - samplers[name].samples[0].at if name in samplers else took
            row["cpu_us_per_message"] = replay_report.cpu_us_per_message(
                use.cpu_percent if use else None, window, len(trace.messages))
            rows[name] = row
    comparison = replay_report.compare(rows)
    difference = replay_drive.difference(trace, answers["on"], answers["off"]) if comparison is not None else None
    examples = (replay_drive.changed_examples(trace, answers["on"], answers["off"])
                if comparison is not None else [])
    checks = replay_report.targets(rows, comparison, on="on" if "on" in rows else "url", difference=difference)
    payload = {
        "schema": replay_report.SCHEMA,
        "started": started.isoformat(timespec="seconds"),
        # What the whole machine did meanwhile (100 = one core; the services and this process
        # included) and the load average after: a shared machine's neighbours show here.
        "host": {**report.host_info(), "cpu_percent_during_replay": max(host.values()) if host else None,
                 "loadavg_after": list(load_after)},
        "config": settings,
        "replay_wall_s": took,
        "trace": trace.summary(),
        "results": rows,
        "comparison": comparison,
        "difference": difference,
        "changed_examples": examples,
        "adverts": ad_info,
        "targets": checks,
    }
    report.write_json(json_path, payload)  # first: a report that fails to print loses no figures
    print(replay_report.format_report(rows, comparison, checks, difference))
    if examples:
        print("\nsome messages on caught and off did not (all in the JSON, changed_examples):")
        for e in examples[:8]:
            print(f"  {e['kind']:<8} on {e['on']:<6} off {e['off']:<6} {e['text'][:60]!r}")
    if host:
        print(f"machine: {max(host.values()):.0f}% CPU (100 = one core) during the replay, load average "
              f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} after it")
    print(f"\nresults written to {json_path}")
    return 0

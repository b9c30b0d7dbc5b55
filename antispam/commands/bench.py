"""``antispam bench``: measure the service under load and the raw pipeline limit, in one run."""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import signal
import sys
from typing import Any

from antispam import config

PATH_FIELDS = ("model_base", "data", "data_dir")  # the corpus' test split gives the texts
SERVE_FIELDS = ("model_name",)

DESCRIPTION = """\
Benchmark the service. Unless --url is given, starts `antispam serve` subprocesses on 127.0.0.1
(local backend with 1 and 2 workers; gRPC backend against the TF Serving stand-in of
antispam.testing, test equipment that runs TensorFlow in a subprocess of its own). Each service
is driven from a separate load-generator process over keep-alive connections with the
test-split texts of the corpus: single-text GET /predict at fixed rates (open loop: latency
counts from the scheduled send time; a rate given as N% is that share of the GET saturation rate
just measured, run after it) and GET, POST 10 and POST 100 texts at saturation, after a
few seconds of unrecorded warm-up load; the local-backend scenarios also get POST 10 texts of
1,000 characters each at saturation ("POST 10 1000-char": consecutive test texts joined with
"。" and cut at 1,000 characters; msg/s counts these texts).
The services run with the dedup cache off (--cache to keep it).
--variants adds the same loads with term lists loaded, explain=true and/or the decision log on
("decisions": a second service with --feedback-db set, run at the same time, its rows alternating
with the plain ones; --decision-db picks its store), next to the plain rows
("lists": a service started with a lists folder of --lists-terms generated block terms, a few re:
patterns and allow terms, applied by the default policy; "explain": every request asks for
explain=true; "lists+explain": both). Row labels get " +lists", " +explain"; the table is
followed by each variant's msg/s, p50, p99 and CPU per message as a ratio of its plain row.
Before that (and again after the loads, unless --quick; the faster measurement counts), in this
process and with no HTTP, it measures the raw pipeline limit: normalize + jieba, featurize into
the version's 20-token windows, and the model on those rows for batches of 64 messages. Prints
a table (requests/s, messages/s, latency percentiles, errors, service CPU and RSS, the service's
CPU per message and its ratio to the pipeline's, fraction of the pipeline limit) and writes the
results as JSON (default bench-results/<timestamp>.json).
--compare FILE prints each row's change against a saved results JSON of the same schema.
Only loopback targets are accepted.

--replay runs the replay benchmark instead (issue 24; antispam/bench/replay.py): a seeded trace
of the test split's pass and spam messages and the held-out everyday messages, with generated
campaigns (a test-split advert with a contact, varied with the robustness variants and synonyms,
sent by 20-200 senders over 2-10 minutes) and ordinary bursts (one greeting from 500 senders, a
parcel-notice template from 300), replayed with compressed time (--replay-speedup) as GET
/predict with sender_id against two services started side by side, campaign detection off and
on, both getting every message at the same moment. Prints and writes (JSON) the copies passed
before each campaign was caught, campaign recall overall and after the 10th copy, ordinary,
everyday and burst messages blocked, p99 and CPU per message of both services.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark the service and the raw pipeline limit",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="bench a running service at this loopback URL instead of starting one")
    # Paths and the model name: flag > ANTISPAM_* > default, read when the command runs.
    config.add_arguments(p, config.Paths, only=PATH_FIELDS)
    config.add_arguments(p, config.ServeConfig, only=SERVE_FIELDS)
    p.add_argument("--version", type=int, help="version for the pipeline limit (default: newest)")
    p.add_argument("--texts", type=int, default=0, help="use at most this many test texts (default all)")
    p.add_argument("--duration", type=float, help="seconds of load per row (default 10; --quick 1.5)")
    p.add_argument("--warmup", type=float, help="first seconds of each row not recorded (default 1)")
    p.add_argument("--rates", help="fixed GET rates, comma-separated: requests/s, or N%% of the GET "
                   "saturation rate measured just before in the same scenario (default 250,500,50%%)")
    p.add_argument("--scenarios", help="services to start, comma-separated: local-1w, local-2w, "
                   "grpc-1w, grpc-2w (default local-1w,local-2w,grpc-1w; --quick local-1w)")
    p.add_argument("--requests",
                   help="request kinds for every scenario: get, postN (N test texts per POST), postNlong "
                   "(N texts of 1,000 characters per POST) (default get,post10,post100, plus post10long "
                   "on the local scenarios)")
    p.add_argument("--variants",
                   help="each load with: plain, lists (term lists loaded), explain (explain=true), "
                   "lists+explain; comma-separated (default plain)")
    p.add_argument("--decision-db", metavar="TARGET",
                   help="store of the decisions variant's decision log: a SQLite path or a postgresql:// URL "
                   "(default: a SQLite file in the bench's temporary folder)")
    p.add_argument("--lists-terms", type=int, default=10_000,
                   help="generated block terms for the lists variants (default 10000)")
    p.add_argument("--connections", type=int, help="connections per load (default: per kind)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in s (default 5)")
    p.add_argument("--driver", choices=("asyncio", "wrk"), default="asyncio",
                   help="load generator for saturation rows (fixed rates always use asyncio); wrk "
                   "must be installed (apt-get install wrk)")
    p.add_argument("--cache", action="store_true", help="keep the service's dedup cache on")
    p.add_argument("--no-pipeline", action="store_true", help="skip the raw pipeline limit")
    p.add_argument("--profile", action="store_true",
                   help="sample the service with py-spy during saturation rows (pip install py-spy) and "
                   "print where the time goes; raw stacks go beside the JSON file")
    p.add_argument("--json", dest="json_path", help="results file (default bench-results/<timestamp>.json)")
    p.add_argument("--compare", metavar="FILE",
                   help="compare this run's rows with a saved results JSON of the same schema: per-row "
                   "change of msg/s, p99 and CPU per message, regressions beyond 10%% marked")
    p.add_argument("--quick", action="store_true",
                   help="seconds instead of minutes: short rows, one rate (50/s), local-1w only, "
                   "200 texts (for tests and smoke runs; the figures mean little)")
    replay = p.add_argument_group("replay benchmark (--replay)")
    replay.add_argument("--replay", action="store_true",
                        help="run the replay benchmark (campaigns and bursts, feature off vs on) instead")
    replay.add_argument("--replay-seed", type=int, help="trace seed (default: antispam.bench.replay.SEED)")
    replay.add_argument("--replay-span", type=float, default=30.0, help="simulated minutes of traffic (default 30)")
    replay.add_argument("--replay-speedup", type=float, default=30.0,
                        help="time compression: simulated seconds per wall second (default 30: 30 minutes in 60 s)")
    replay.add_argument("--replay-window", type=float, default=600.0,
                        help="the campaign window in simulated seconds (default 600); the service gets it "
                        "divided by --replay-speedup")
    replay.add_argument("--replay-campaigns", type=int, default=10, help="campaigns in the trace (default 10)")
    replay.add_argument("--replay-action", choices=("mark", "review", "block"), default="block",
                        help="what the on service's default policy does with campaign evidence (default block)")
    replay.add_argument("--replay-min-senders", type=int,
                        help="the on service's ANTISPAM_CAMPAIGN_MIN_SENDERS (default: the service's)")
    replay.add_argument("--replay-ads", choices=("any", "missed"), default="any",
                        help="adverts of the campaigns: any test-split spam (default), or only spam the off "
                        "service's model lets pass (asked before the replay): what detection adds where the "
                        "model alone fails")
    replay.add_argument("--replay-split", choices=("test", "validation"), default="test",
                        help="material of the trace: the test split and held-out everyday messages (the "
                        "figures to report), or the validation split and the everyday training part (to "
                        "choose settings such as --replay-min-senders without looking at the test figures)")
    p.set_defaults(run=run)


def _floats(text: str, what: str) -> tuple[float, ...]:
    from antispam.errors import UserError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise UserError(f"{what} must be positive")
    return values


def _rates(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``--rates``: requests/s, or ``N%`` of the GET saturation rate measured in the same run."""
    from antispam.errors import UserError

    parts = [v.strip() for v in text.split(",") if v.strip()]
    shares = _floats(",".join(p[:-1] for p in parts if p.endswith("%")), "--rates percentages")
    if any(s > 100 for s in shares):
        raise UserError("--rates percentages are of the saturation rate: at most 100%")
    return _floats(",".join(p for p in parts if not p.endswith("%")), "--rates"), tuple(s / 100 for s in shares)


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve defaults (with --quick) into one dict; also recorded in the JSON."""
    from antispam.bench import scenarios
    from antispam.errors import UserError

    quick = args.quick
    duration = args.duration if args.duration is not None else (1.5 if quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if quick else 1.0)
    if duration <= 0 or not 0 <= warmup < duration:
        raise UserError("--duration must be > 0 and --warmup shorter than it")
    rates, shares = _rates(args.rates or ("50" if quick else "250,500,50%"))
    if args.url:
        names: tuple[str, ...] = ()
    else:
        default = "local-1w" if quick else ",".join(scenarios.DEFAULT_SERVICES)
        names = tuple(n.strip() for n in (args.scenarios or default).split(",") if n.strip())
        scenarios.services_by_name(names)  # validates
    if args.requests is None:
        requests, local_requests = scenarios.REQUESTS, scenarios.LOCAL_REQUESTS
    else:
        requests = tuple(scenarios.parse_request(r.strip()) for r in args.requests.split(",") if r.strip())
        local_requests = ()
        if not requests:
            raise UserError("--requests is empty")
    from antispam.bench import variants

    chosen = variants.parse_variants(args.variants) if args.variants is not None else variants.DEFAULT_VARIANTS
    if args.url and any(variants.uses_lists(v) or variants.uses_decisions(v) for v in chosen):
        raise UserError("--variants lists and decisions need services started by the bench (with the "
                        "generated lists, with the decision log); with --url, use plain or explain")
    if args.lists_terms < 1:
        raise UserError("--lists-terms must be >= 1")
    if args.connections is not None and args.connections < 1:
        raise UserError("--connections must be >= 1")
    if args.timeout <= 0:
        raise UserError("--timeout must be > 0")
    paths = config.resolve(config.Paths, args, only=PATH_FIELDS)
    serve = config.resolve(config.ServeConfig, args, only=SERVE_FIELDS)
    return {
        "url": args.url, "model_base": paths.model_base, "model_name": serve.model_name,
        "version": args.version, "data": paths.data, "data_dir": paths.data_dir,
        "texts": args.texts or (200 if quick else 0), "duration": duration, "warmup": warmup,
        "rates": list(rates), "rate_shares": list(shares), "scenarios": list(names), "requests": list(requests),
        "local_requests": list(local_requests),  # added for the local-backend scenarios
        "variants": list(chosen), "lists_terms": args.lists_terms, "decision_db": args.decision_db,
        "connections": args.connections, "timeout": args.timeout, "driver": args.driver,
        "cache": args.cache, "pipeline": not args.no_pipeline, "quick": quick,
        "service_warmup": 0.6 if quick else 4.0, "profile": args.profile,
    }


def load_texts(data: str | None, limit: int, data_dir: str = config.Paths.data_dir) -> list[str]:
    from antispam.data import load_split

    split = load_split(data, data_dir, progress=False)
    texts = [s.text for s in split.test] or [s.text for s in split.train]
    return texts[:limit] if limit else texts


def evaluate_targets(results: list[dict[str, Any]], pipeline: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's targets, checked against this run's rows (local backend, 2 workers, plain)."""
    results = [r for r in results if r.get("variant", "plain") == "plain"]

    def rows(request: str, mode: str, rate: float | None = None) -> list[dict[str, Any]]:
        return [r for r in results if r["service"] == "local-2w" and r["request"] == request
                and r["mode"] == mode and (rate is None or r["target_rate"] == rate)]

    targets: list[dict[str, Any]] = []
    for r in rows("get", "saturation"):
        targets.append({"target": "local-2w GET /predict at saturation >= 1000 req/s, 0 errors",
                        "value": f"{r['requests_per_s']:.0f} req/s, {r['errors']} errors",
                        "met": r["requests_per_s"] >= 1000 and r["errors"] == 0})
    for r in rows("get", "rate", 500.0):
        p99 = r["latency_ms"]["p99"]
        targets.append({"target": "local-2w GET /predict p99 <= 25 ms at 500 req/s",
                        "value": f"p99 {p99:.1f} ms, {r['errors']} errors",
                        "met": p99 <= 25 and r["errors"] == 0})
    for r in rows("post100", "saturation"):
        targets.append({"target": "local-2w POST 100 texts >= 3000 messages/s",
                        "value": f"{r['messages_per_s']:.0f} msg/s", "met": r["messages_per_s"] >= 3000})
    local2 = [r for r in results if r["service"] == "local-2w" and r["errors"] == 0
              and r.get("text_chars") is None]
    if pipeline and local2:
        best = max(local2, key=lambda r: r["messages_per_s"])
        fraction = best["messages_per_s"] / pipeline["implied_messages_per_s"]
        targets.append({"target": "service >= 50% of the raw pipeline limit",
                        "value": f"{fraction:.0%} ({best['scenario']}: {best['messages_per_s']:.0f} of "
                                 f"{pipeline['implied_messages_per_s']:.0f} msg/s)",
                        "met": fraction >= 0.5})
    return targets


def replay_settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The replay benchmark's settings (``--replay``); also recorded in its JSON."""
    from antispam.bench import replay, scenarios
    from antispam.errors import UserError

    if args.replay_speedup <= 0 or args.replay_span <= 0 or args.replay_window <= 0:
        raise UserError("--replay-speedup, --replay-span and --replay-window must be > 0")
    if not 0 <= args.replay_campaigns <= 100:
        raise UserError("--replay-campaigns must be from 0 to 100")
    if args.replay_min_senders is not None and args.replay_min_senders < 2:
        raise UserError("--replay-min-senders must be at least 2")
    if args.replay_span < 10:
        raise UserError("--replay-span must be at least 10 minutes (a campaign lasts up to 10)")
    if args.variants or args.compare or args.profile or args.rates or args.requests:
        raise UserError("--replay takes none of --variants, --compare, --profile, --rates, --requests")
    names: tuple[str, ...] = ()
    if not args.url:
        names = tuple(n.strip() for n in (args.scenarios or "local-1w").split(",") if n.strip())
        if len(names) != 1:
            raise UserError("--replay starts one kind of service (twice: feature off and on); give one --scenarios")
        scenarios.services_by_name(names)
    else:
        from antispam.bench.load import loopback_address

        loopback_address(args.url)
    if args.timeout <= 0:
        raise UserError("--timeout must be > 0")
    paths = config.resolve(config.Paths, args, only=PATH_FIELDS)
    serve = config.resolve(config.ServeConfig, args, only=SERVE_FIELDS)
    return {"url": args.url, "scenario": names[0] if names else None, "model_base": paths.model_base,
            "model_name": serve.model_name, "data": paths.data, "data_dir": paths.data_dir,
            "seed": args.replay_seed if args.replay_seed is not None else replay.SEED,
            "span_minutes": args.replay_span, "speedup": args.replay_speedup,
            "window_s": args.replay_window, "service_window_s": args.replay_window / args.replay_speedup,
            "campaigns": args.replay_campaigns, "timeout": args.timeout, "cache": args.cache,
            "action": args.replay_action, "ads": args.replay_ads, "min_senders": args.replay_min_senders,
            "split": args.replay_split,
            "connections": args.connections or 64, "warmup_s": args.warmup if args.warmup is not None else 5.0}


def run(args: argparse.Namespace) -> int:
    settings = replay_settings_from(args) if args.replay else settings_from(args)
    # SIGTERM unwinds like Ctrl-C, so the services and generators it started are stopped too.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.replay:
            from antispam.bench.replay_run import run_replay

            return run_replay(args, settings)
        return _run(args, settings)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    import tempfile
    from pathlib import Path

    from antispam.bench import report, scenarios, variants
    from antispam.bench.load import loopback_address
    from antispam.bench.procstats import listening_pid

    started = _dt.datetime.now()
    json_path = Path(args.json_path) if args.json_path else report.default_json_path(started)
    texts = load_texts(settings["data"], settings["texts"], settings["data_dir"])

    def loads_for(service: scenarios.Service) -> list[scenarios.Load]:
        requests = scenarios.requests_for(service, tuple(settings["requests"]), tuple(settings["local_requests"]))
        return scenarios.with_variants(scenarios.plan(requests, tuple(settings["rates"]), settings["connections"],
                                                      tuple(settings.get("rate_shares", ()))),
                                       settings["variants"])

    model_dir = Path(settings["model_base"]) / settings["model_name"]
    if args.driver == "wrk":
        from antispam.bench.wrk import require_wrk

        require_wrk()
    profile_dir = None
    if args.profile:
        from antispam.bench.profile import require_pyspy

        require_pyspy()
        profile_dir = json_path.with_name(json_path.stem + "-profiles")
    if args.url:
        loopback_address(args.url)
    else:
        from antispam.versions import resolve_version

        resolve_version(model_dir, settings["version"])  # fail early, before minutes of work

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    baseline = None
    if args.compare:
        from antispam.bench import compare

        baseline = compare.load_baseline(args.compare)  # fail early, before minutes of work

    def measure_pipeline() -> dict[str, Any]:
        from antispam.bench.pipeline import measure

        return measure(model_dir, texts, version=settings["version"],
                       repeats=1 if settings["quick"] else 3).to_dict()

    pipeline = None
    if settings["pipeline"]:
        say(f"measuring the raw pipeline limit on {len(texts)} texts ...")
        pipeline = measure_pipeline()
        say(report.format_pipeline(pipeline))

    def progress(record: dict[str, Any]) -> None:
        lat = record["latency_ms"]
        say(f"  {record['scenario']}: {record['requests_per_s']:.0f} req/s, p99 {lat['p99'] or 0:.1f} ms, "
            f"{record['errors']} errors")

    common = dict(duration=settings["duration"], warmup=settings["warmup"], timeout=settings["timeout"],
                  driver=settings["driver"], service_warmup=settings["service_warmup"],
                  profile_dir=profile_dir, progress=progress)
    results: list[dict[str, Any]] = []
    lists_info: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="antispam-bench-") as tmp:
        workdir = Path(tmp)
        lists_dir = workdir / "lists"
        if any(variants.uses_lists(v) for v in settings["variants"]):
            lists_info = variants.write_lists(lists_dir, settings["lists_terms"])
            lists_info["hits"] = variants.hit_rate(lists_dir, texts)
            say(f"lists variant: {lists_info['block_terms']} block terms, {lists_info['block_patterns']} patterns, "
                f"{lists_info['allow_terms']} allow terms and {lists_info['allow_terms_with_digits']} with digits; "
                f"they decide {lists_info['hits']['share']:.1%} of the {len(texts)} test texts")
        if args.url:
            pid = listening_pid(loopback_address(args.url)[1])
            service = scenarios.Service("url", "url", 0)
            say(f"driving {args.url}" + (f" (service pid {pid})" if pid else " (service process not found: "
                                                                          "no CPU/RSS)"))
            results += scenarios.drive(service, args.url, pid, loads_for(service), texts, workdir=workdir,
                                       **common)
        else:
            cache_size = 20000 if settings["cache"] else 0
            with contextlib.ExitStack() as stack:
                standin = None
                for service in scenarios.services_by_name(tuple(settings["scenarios"])):
                    extra: dict[str, Any] = {}
                    model_server_pid = None
                    if service.backend == "grpc":
                        if standin is None:
                            say("starting the TF Serving stand-in ...")
                            standin = stack.enter_context(scenarios.Standin(settings["model_base"], workdir))
                        extra = {"tfs_grpc": standin.grpc_target, "tfs_rest": standin.rest_url}
                        model_server_pid = standin.process.pid
                    loads = loads_for(service)
                    by_label: dict[str, dict[str, Any]] = {}
                    # One service without lists (plain and explain rows; a folder that does not
                    # exist, so no lists/ of the working directory is picked up), one with them.
                    # Issue 23: within each, the rows with the decision log go to a second
                    # service running at the same time, and the rows alternate (plan order).
                    for with_lists in (False, True):
                        group = [load for load in loads if variants.uses_lists(load.variant) == with_lists]
                        if not group:
                            continue
                        folder = lists_dir if with_lists else workdir / "no-lists"
                        with contextlib.ExitStack() as running:
                            procs: dict[bool, Any] = {}
                            for with_log in sorted({variants.uses_decisions(load.variant) for load in group}):
                                extra_args: tuple[str, ...] = ("--lists-dir", str(folder))
                                if with_log:
                                    extra_args += ("--feedback-db", settings["decision_db"]
                                                   or str(workdir / f"decisions-{service.name}.db"))
                                say(f"starting {service.name}" + (" with the generated lists" if with_lists else "")
                                    + (" with the decision log" if with_log else "") + " ...")
                                procs[with_log] = running.enter_context(scenarios.ServiceProcess(
                                    service, model_base=settings["model_base"], model_name=settings["model_name"],
                                    workdir=workdir, cache_size=cache_size, extra_args=extra_args, **extra))
                            if with_lists and lists_info is not None:
                                # What the service says it loaded (GET /lists), not what was written.
                                served = (scenarios.get_json(procs[min(procs)].url + "/lists") or {}).get("sets")
                                lists_info["served"] = served
                                say(f"  {service.name} serves the lists: {served}")
                            done: dict[bool, list[dict[str, Any]]] = {key: [] for key in procs}
                            for load in group:  # one row at a time, in plan order: variants alternate
                                key = variants.uses_decisions(load.variant)
                                proc = procs[key]
                                run = dict(common, service_warmup=0.0) if done[key] else common
                                for record in scenarios.drive(service, proc.url, proc.pid, [load], texts,
                                                              workdir=workdir, model_server_pid=model_server_pid,
                                                              earlier=done[key], **run):
                                    by_label[record["scenario"]] = record
                                    done[key].append(record)
                            for proc in procs.values():
                                code = proc.stop()
                                if code != 0:
                                    say(f"warning: {service.name} exited with {code} on SIGTERM:\n{proc.log_tail()}")
                    # In plan order: each load's variants side by side.
                    results += [by_label[f"{service.name} {load.label}"] for load in loads]

    if pipeline:
        after = None
        if not settings["quick"]:
            say("measuring the raw pipeline limit again, after the loads ...")
            after = measure_pipeline()
        pipeline = report.faster_pipeline(pipeline, after)
        for record in results:
            # The limit is measured on the test texts; long-text rows have no limit to compare with.
            if record.get("text_chars") is None:
                record["fraction_of_limit"] = record["messages_per_s"] / pipeline["implied_messages_per_s"]
    report.add_cpu_per_message(results, pipeline)
    report.add_vs_plain(results)
    targets = evaluate_targets(results, pipeline)
    payload = {
        "schema": report.SCHEMA,
        "started": started.isoformat(timespec="seconds"),
        "host": report.host_info(),
        "config": settings,
        "texts": len(texts),
        "pipeline": pipeline,
        "lists": lists_info,
        "results": results,
        "targets": targets,
    }
    print(report.format_pipeline(pipeline))
    print()
    print(report.format_table(results))
    summary = report.format_variants(results, lists_info)
    if summary:
        print()
        print(summary)
    for record in results:
        if record.get("profile"):
            from antispam.bench.profile import format_components

            print()
            print(format_components(record["scenario"], record["profile"]))
    if targets:
        print()
        for t in targets:
            print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']}")
    if baseline is not None:
        from antispam.bench import compare

        rows = compare.compare(results, baseline["results"], compare.DEFAULT_TOLERANCE)
        diffs = compare.settings_differences(settings, baseline.get("config") or {})
        notes = [f"the baseline ran with other settings: {', '.join(diffs)}"] if diffs else []
        busy = compare.busy_machine_note(results, baseline["results"])
        notes += [busy] if busy else []
        print()
        print(compare.format_comparison(rows, baseline=args.compare, tolerance=compare.DEFAULT_TOLERANCE,
                                        notes=notes))
        payload["comparison"] = compare.to_json(rows, baseline=args.compare, tolerance=compare.DEFAULT_TOLERANCE)
    report.write_json(json_path, payload)
    print(f"\nresults written to {json_path}")
    return 0

"""Benchmarks of the service (``antispam bench``): load generator, raw pipeline limit, report.

The parts are separate modules so each can be tested alone: :mod:`stats` (percentiles),
:mod:`load` (the HTTP load generator, run in its own process), :mod:`procstats` (CPU and RSS of
the service from ``/proc``), :mod:`pipeline` (the no-HTTP limit), :mod:`scenarios` (starting
services and driving them) and :mod:`report` (table and JSON).
"""

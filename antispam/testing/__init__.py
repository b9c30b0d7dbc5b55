"""Test equipment shipped with the package: imported only by the tests and ``antispam bench``.

:mod:`antispam.testing.standin_tfs` is a TF Serving stand-in (the official wire formats, served
from a model folder by a subprocess) for machines without a Docker engine. Nothing the service
runs imports this package; ``tests/unit/test_layering.py`` checks that.
"""

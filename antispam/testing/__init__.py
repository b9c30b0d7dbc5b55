"""Test equipment shipped with the package: imported only by the tests, ``scripts/`` and ``antispam bench``.

:mod:`antispam.testing.standin_tfs` is a TF Serving stand-in (the official wire formats, served
from a model folder by a subprocess) for machines without a Docker engine;
:mod:`~antispam.testing.tinymodel` builds tiny model versions in the real layout and
:mod:`~antispam.testing.fakes` is a scriptable backend (both used by ``scripts/`` too, which never
import ``tests``). Nothing the service runs imports this package; ``tests/unit/test_layering.py`` checks that.
"""

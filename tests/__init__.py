"""The test suite, a package: test modules in folders by kind, shared equipment in ``helpers``.

* ``unit``: pure functions and single modules, fast (``pytest -m unit``);
* ``service``: the HTTP app in-process, the backends (against the TF Serving stand-in), the CLI
  commands run in-process or as one short command;
* ``e2e``: real ``antispam serve`` processes, hot reload, faults, fuzzing and schemathesis
  against a live server, training on the real corpus;
* ``deploy``: docker-compose, Kubernetes manifests, the real Docker stack, packaging.

``tests/conftest.py`` marks every test with its folder's kind. Import helpers as
``tests.helpers.<name>``: every folder is a package, so pytest imports each test module by its
full name (``tests.unit.test_text``) after putting the repository root first on ``sys.path``,
from whatever directory it runs. That also matters because TensorLayer installs a top-level
``tests`` package of its own into site-packages: outside pytest (a script, ``python -c``),
``import tests`` finds this one only when the repository root is on ``sys.path``.
"""

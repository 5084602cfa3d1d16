"""End-to-end browser test: the notebooks in a real JupyterLab (see docs/browser-test.md).

A package (this file) so that ``tests/browser/conftest.py`` is imported as
``browser.conftest`` and never shadows ``tests/conftest.py``, which the unit
tests import as plain ``conftest``.
"""

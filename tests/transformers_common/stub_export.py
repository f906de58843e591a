"""``ExportTesterMixin``, the base class of transformers' ``ModelTesterMixin``, written by this repository.

transformers' own ``tests/exporters/test_export.py`` (the ``torch.export`` tests of every model) is not in
transformers' source distribution on PyPI, which ships only the top-level ``tests/test_*_common.py`` files;
tests/transformers_common/fetch.py installs this module in its place, so the export tests are not run here.
"""


class ExportTesterMixin:
    """Empty: transformers' export tests are not in its sdist, so they are not run against SRHA here
    (``ModelTesterMixin`` inherits nothing from this class)."""

"""``GenerationTesterMixin``, written by this repository for transformers' ``ModelTesterMixin``.

transformers' ``tests/generation/test_utils.py`` is not in its source distribution on PyPI;
``test_modeling_common.py`` only uses the class in ``issubclass`` checks (a tester that inherits it must test a
model that can generate). SRHA cannot generate, so its testers do not inherit it.
"""


class GenerationTesterMixin:
    """Empty: the generation tests are not run (SRHA is not a generative model)."""

"""``config_common_kwargs`` for transformers' ``ConfigTester``, written by this repository.

transformers' ``tests/utils/test_configuration_utils.py`` is not in its source distribution on PyPI.
``ConfigTester.check_config_arguments_init`` builds a config from these keyword arguments and checks that
each one is read back with its value, so every value here differs from ``PretrainedConfig``'s default
(``dtype`` must be float16: the check compares ``config.dtype`` with ``torch.float16``).

The keys are the settings common to every configuration: the fields of ``PretrainedConfig`` (a dataclass:
``architectures``, ``output_hidden_states``, ``return_dict``, ``dtype``, ``chunk_size_feed_forward``,
``is_encoder_decoder``, ``id2label``, ``label2id``, ``problem_type``) and the keyword arguments that its
``__post_init__`` stores as attributes and its docstring lists (``name_or_path``, ``output_attentions``).
Left out: ``transformers_version`` (written by ``to_dict``, not a setting), ``per_layer_config`` (per-layer
overrides, which need a ``num_hidden_layers``), ``tie_last_hidden_states`` (read only by models with a final
norm, not stored by ``PretrainedConfig`` itself) and ``attn_implementation`` / ``experts_implementation``
(kernel choices, checked against a model's support when it is built).
"""

config_common_kwargs = {
    "name_or_path": "common-kwargs-check",  # default ""
    "architectures": ["CommonKwargsCheckModel"],  # default None
    "output_hidden_states": True,  # default False
    "output_attentions": True,  # default False
    "return_dict": False,  # default True
    "dtype": "float16",  # default None (float32); stored as torch.float16
    "chunk_size_feed_forward": 5,  # default 0 (no chunking)
    "is_encoder_decoder": True,  # default False
    "id2label": {0: "first", 1: "second", 2: "third"},  # default None (two labels, LABEL_0 and LABEL_1)
    "label2id": {"first": 0, "second": 1, "third": 2},  # default None
    "problem_type": "multi_label_classification",  # default None
}

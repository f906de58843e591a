"""Tiny random transformers backbone configs, one per family srha_hf splits (srha_hf/backbones/hf.py), as the
dicts ``backbone_config`` takes (``model_type`` + the config's own keys): the tests build them in well under a
second each."""

TINY_BACKBONE_CONFIGS = {
    # stage 4 has two layers, so the dilation of a later block is exercised too
    "resnet": {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 2, 2]},
    "bit": {"model_type": "bit", "embedding_size": 8, "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 2], "num_groups": 2},
    "convnext": {"model_type": "convnext", "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]},
    "convnextv2": {"model_type": "convnextv2", "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]},
    # two blocks in stage 3: a shifted window too
    "swin": {"model_type": "swin", "embed_dim": 8, "depths": [1, 1, 2, 1], "num_heads": [1, 1, 1, 1], "window_size": 4, "image_size": 64},
    "swinv2": {"model_type": "swinv2", "embed_dim": 8, "depths": [1, 1, 2, 1], "num_heads": [1, 1, 1, 1], "window_size": 4, "image_size": 64},
}
# the four families the issue names first (the others are covered by the split and round-trip tests)
MAIN_FAMILIES = ("resnet", "bit", "convnext", "swin")
EXPECTED_STRIDES = {
    "resnet": (4, 4, 8, 16, 16), "bit": (4, 4, 8, 16, 16), "convnext": (4, 4, 8, 16, 32), "convnextv2": (4, 4, 8, 16, 32),
    "swin": (4, 4, 8, 16, 32), "swinv2": (4, 4, 8, 16, 32),
}  # fmt: skip

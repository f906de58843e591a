"""The command-line tools, installed as console scripts with the package (``setup.cfg``) and kept as
``scripts/*.py`` for a checkout:

| tool | module | what it does |
|---|---|---|
| ``srha-train`` | :mod:`srha_hf.cli.train` | train a recipe (``accelerate launch -m srha_hf.cli.train --config ...`` on several GPUs) |
| ``srha-evaluate`` | :mod:`srha_hf.cli.evaluate` | evaluate a model on target domains under a protocol |
| ``srha-predict`` | :mod:`srha_hf.cli.predict` | masks, colour masks and overlays for image files |
| ``srha-convert`` | :mod:`srha_hf.cli.convert_original_checkpoint` | the authors' checkpoints to model folders |
| ``srha-export-onnx`` | :mod:`srha_hf.cli.export_onnx` | ONNX export checked against PyTorch |
| ``srha-check-data`` | :mod:`srha_hf.cli.check_data` | check a benchmark on disk |
| ``srha-app`` | :mod:`srha_hf.cli.app` | the Gradio browser demo |
| ``srha-make-synthetic-data`` | :mod:`srha_hf.cli.make_synthetic_data` | write the embedded synthetic benchmark |

Each module's ``main(argv=None)`` returns the exit status.
"""

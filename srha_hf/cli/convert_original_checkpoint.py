r"""Convert a checkpoint saved by the SRHA authors' training code into a model folder.

    python scripts/convert_original_checkpoint.py --checkpoint last_None_epoch_31_mean-iu_0.00000.pth \
        --arch r50 --output models/srha-r50-gtav

The checkpoint is the dict the authors' code writes every epoch (docs/method.md §8.4): `state_dict` (DDP keys,
`module.` + the parameter names of docs/method.md §1.2 / §1.5), `epoch`, `mean_iu`, `command`. It is read with
`torch.load(weights_only=True)`. Its tensors must match the --arch model exactly: otherwise nothing is
written and the missing, unexpected and mis-shaped keys are listed (exit status 2). The output folder
(config.json, model.safetensors, preprocessor_config.json, README.md model card with the checkpoint's
provenance) loads with `AutoModelForSemanticSegmentation.from_pretrained` after `import srha_hf`.
--arch r50_m2f converts the Mask2Former variant (the authors' train_m2f.py): the ResNet-50 keys are
kept, the head's `m2f_decoder.*` keys are renamed to transformers' module names (the packed
self-attention `in_proj` tensors split into q / k / v) and the loss buffer `criterion.empty_weight`
is dropped; the report's `notes` say so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from srha_hf.cli import ArgumentParser, UsageError, check_output, fail
from srha_hf.conversion import ARCHS


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="the authors' .pth checkpoint")
    p.add_argument("--arch", required=True, choices=list(ARCHS), help="the checkpoint's architecture")
    p.add_argument("--output", required=True, help="model folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--repo_id", default=None, help="Hub repo id the model will be published as (used in the card)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from srha_hf.conversion import convert_original_checkpoint

    try:
        if Path(args.checkpoint).is_dir():
            raise UsageError(f"--checkpoint {args.checkpoint} is a folder; expected the authors' .pth checkpoint file")
        check_output(args.output, "--output", folder=True)
        report = convert_original_checkpoint(args.checkpoint, args.arch, args.output, overwrite=args.overwrite,
                                             repo_id=args.repo_id, progress=not args.no_progress)  # fmt: skip
    except (ValueError, FileNotFoundError, FileExistsError, UsageError) as exc:  # CheckpointMismatchError is a ValueError
        return fail(exc)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

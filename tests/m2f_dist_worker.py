"""Run under `torchrun --nproc_per_node 2`: the Mask2Former set loss of identical inputs on every
process, under Accelerate's process group; each rank writes its loss, our num_masks and transformers'
own num_masks as JSON. Arguments: output prefix."""

import json
import sys

import torch
from accelerate import PartialState
from m2f_loss_inputs import set_loss_inputs  # tests/ is this script's folder, first on sys.path
from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

from srha_hf.heads.mask2former import _criterion, mask2former_set_loss, mask2former_targets


def main(prefix):
    state = PartialState(cpu=True)
    config, classes, masks, labels = set_loss_inputs()
    torch.manual_seed(5)  # the criterion's point sampling
    loss, parts = mask2former_set_loss(classes, masks, labels, config)
    _, class_labels = mask2former_targets(labels, 19, 255, True)
    ours = _criterion(config).get_num_masks(class_labels, torch.device("cpu")).item()
    theirs = Mask2FormerLoss.get_num_masks(_criterion(config), class_labels, torch.device("cpu")).item()
    out = {
        "world": state.num_processes,
        "loss": loss.item(),
        "parts": {k: v.item() for k, v in parts.items()},
        "num_masks": ours,
        "transformers_num_masks": theirs,
    }
    with open(f"{prefix}.{state.process_index}.json", "w") as f:
        json.dump(out, f)
    state.wait_for_everyone()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

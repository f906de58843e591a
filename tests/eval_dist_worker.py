"""Run under `torchrun --nproc_per_node 2`: evaluate_model under a plain gloo process group (no
Accelerate), default, drop_remainder and a DDP-wrapped model; rank 0 writes the results as JSON. Argument: root, output."""

import json
import sys

import torch.distributed as dist
from eval_helpers import PaletteModel  # tests/ is this script's folder, first on sys.path
from torch.nn.parallel import DistributedDataParallel

from srha_hf.data import load_benchmark
from srha_hf.data.synthetic import synthetic_eval_sizes
from srha_hf.evaluation import evaluate_model

SIZE = (96, 54)


def main(root, output):
    dist.init_process_group("gloo")
    try:
        model = PaletteModel()
        datasets = {
            "cityscapes": load_benchmark("cityscapes", f"{root}/cityscapes", "val"),
            "mapillary:faithful": load_benchmark("mapillary", f"{root}/mapillary", "val"),
        }
        kw = dict(eval_sizes=synthetic_eval_sizes(SIZE), progress=False, batch_size=2)
        out = {
            "world": dist.get_world_size(),
            "default": evaluate_model(model, datasets, **kw),
            "drop_remainder": evaluate_model(model, datasets, drop_remainder=True, **kw),
            # a training loop passes its DDP-wrapped model (in train mode): unwrapped, evaluated, restored
            "ddp": evaluate_model(DistributedDataParallel(model.train()), {"cityscapes": datasets["cityscapes"]}, **kw),
            "ddp_training_after": model.training and model.norm.training,
        }
        if dist.get_rank() == 0:
            with open(output, "w") as f:
                json.dump(out, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])

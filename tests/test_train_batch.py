"""The reference's total batch on any number of processes (total_batch_size, docs/method.md §5.4) and
checkpoint selection on the source (eval_select_on, §8.3): gradient equivalence, the log, exact resume
of an accumulating run, the periodic history and what the model card says."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from test_train import kill_when, launch, run_args

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.hub import training_card_fields
from srha_hf.training import ConfigError, load_config
from srha_hf.training.trainer import _eval_subset, accumulation_steps, record_periodic_evaluation, training_step

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

PLAIN = {"srm": False, "pc_weight": 0.0, "ga_weights": [0.0] * 4, "ra_weights": [0.0] * 4, "la_weights": [0.0] * 4}


def one_step(batches, seed=0):
    """The parameters after one ``training_step`` on ``batches`` (plain DeepLabV3+, BN and dropout in eval
    mode, SGD with lr 1 and no momentum or decay: the update is minus the accumulated gradient)."""
    from accelerate import Accelerator

    torch.manual_seed(seed)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", **PLAIN)).train()
    for module in model.modules():
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout2d)):
            module.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD([{"params": params, "initial_lr": 1.0}], lr=1.0, momentum=0.0)
    config = load_config(None, {"backbone": "shufflenetv2", "max_iter": 10**9, "model_kwargs": PLAIN})
    run = SimpleNamespace(accelerator=Accelerator(cpu=True), config=config, teacher=None, student=model, unwrapped=model,
                          optimizer=optimizer, output_dir=Path("."), step=0, batch_in_epoch=0)  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result = training_step(run, batches)
    assert run.step == 1 and run.batch_in_epoch == len(batches)
    return {n: before[n] - p.detach() for n, p in model.named_parameters() if p.requires_grad}, result


def batch_of(pixels, labels):
    return {"pixel_values": pixels, "labels": labels, "srm_weights": torch.zeros(pixels.shape[0], 1, 1)}


def test_two_micro_batches_of_two_give_the_gradient_of_one_batch_of_four():
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(4, 3, 64, 64, generator=g)
    labels = torch.randint(0, 19, (4, 64, 64), generator=g)  # no ignored pixel
    big, big_result = one_step([batch_of(pixels, labels)])
    small, small_result = one_step([batch_of(pixels[:2], labels[:2]), batch_of(pixels[2:], labels[2:])])
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-6, msg=name)
    assert abs(small_result.mean_loss.item() - big_result.mean_loss.item()) < 1e-5
    assert set(small_result.terms) == {"ce", "aux"}


def test_micro_batches_with_different_valid_pixel_counts_weigh_equally():
    """Each micro-batch's loss is its own mean divided by the number of micro-batches: with ignored pixels
    in one micro-batch only, the step is the mean of the two micro-batches' own gradients, not the big
    batch's (which weighs every valid pixel equally)."""
    g = torch.Generator().manual_seed(2)
    pixels = torch.randn(4, 3, 64, 64, generator=g)
    labels = torch.randint(0, 19, (4, 64, 64), generator=g)
    labels[2:, :48] = 255  # the second micro-batch has a quarter of the first's valid pixels
    first, _ = one_step([batch_of(pixels[:2], labels[:2])])
    second, _ = one_step([batch_of(pixels[2:], labels[2:])])
    both, _ = one_step([batch_of(pixels[:2], labels[:2]), batch_of(pixels[2:], labels[2:])])
    big, _ = one_step([batch_of(pixels, labels)])
    name = "final2.weight"
    torch.testing.assert_close(both[name], (first[name] + second[name]) / 2, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(both[name], big[name], rtol=1e-3, atol=1e-6)


def test_accumulation_steps_and_the_log():
    lines = []
    config = load_config(None, {"batch_size": 4, "total_batch_size": 8})
    assert accumulation_steps(config, 1, log=lines.append) == 2
    assert "batch: 4 per process x 1 process(es) x 2 accumulation step(s) = 8 images per optimizer step (recipe's total_batch_size 8)" in lines[0]
    assert "SRM statistics and BatchNorm see micro-batches of 4 image(s)" in lines[-1]
    lines.clear()
    assert accumulation_steps(config, 2, log=lines.append) == 1 and not any("WARNING" in m for m in lines)  # the reference: 4 x 2 GPUs
    lines.clear()
    odd = load_config(None, {"batch_size": 3, "total_batch_size": 8})
    assert accumulation_steps(odd, 1, log=lines.append) == 3
    assert any("WARNING: the effective total batch 9 differs from the recipe's total_batch_size 8" in m for m in lines)
    lines.clear()
    assert accumulation_steps(load_config(None, {"batch_size": 4}), 3, log=lines.append) == 1 and "= 12 images" in lines[0]
    with pytest.raises(ConfigError, match="total_batch_size must be >= 1 or null, got 0"):
        load_config(None, {"total_batch_size": 0})


def test_paper_recipes_name_their_reference_total_batch():
    root = Path(__file__).resolve().parents[1] / "configs"
    names = ("r50_gtav", "r101_gtav", "mobilenetv2_gtav", "shufflenetv2_gtav", "r50_cityscapes", "r50_m2f_gtav")
    totals = {name: load_config(root / f"{name}.yaml").total_batch_size for name in names}
    assert totals == {"r50_gtav": 8, "r101_gtav": 9, "mobilenetv2_gtav": 8, "shufflenetv2_gtav": 8, "r50_cityscapes": 8, "r50_m2f_gtav": 8}
    assert load_config(root / "demo.yaml").total_batch_size is None


def test_select_on_source_evaluates_only_the_source_and_the_card_says_last_iteration(tmp_path):
    config = load_config(None, {"eval_select_on": "source", "val_datasets": ["cityscapes", "bdd100k"]})
    val_sets = {"cityscapes": 1, "bdd100k": 2, "gtav": 3}
    assert _eval_subset(config, val_sets, final=False) == {"gtav": 3}
    assert _eval_subset(config, val_sets, final=True) == val_sets
    reference = load_config(None, {"val_datasets": ["cityscapes", "bdd100k"]})
    assert reference.eval_select_on == "target" and _eval_subset(reference, val_sets, final=False) == {"cityscapes": 1}
    with pytest.raises(ConfigError, match="eval_select_on must be 'target' \\(the reference\\) or 'source', got 'val'"):
        load_config(None, {"eval_select_on": "val"})
    fields = training_card_fields(config, SRHAConfig(backbone="shufflenetv2"), num_processes=1, hardware="CPU", training_time=1.0)
    assert fields["checkpoint"].startswith(f"the last iteration (step {config.max_iter}), not a checkpoint selected")
    assert "periodic evaluations on the source's val split (eval_select_on: source)" in fields["checkpoint"]
    # the history keeps one entry per step; a resumed run's re-evaluation replaces what a killed one left
    path = tmp_path / "eval_history.json"
    for step, miou in ((100, 0.1), (200, 0.2), (200, 0.25), (150, 0.15)):
        record_periodic_evaluation(path, step, "source", {"gtav": {"mean_iou": miou}})
    history = json.loads(path.read_text())
    assert [e["step"] for e in history["evaluations"]] == [100, 150] and history["select_on"] == "source"
    assert "the last iteration" in history["note"]


def test_a_resumed_runs_training_time_counts_the_earlier_processes_or_says_from_which_step():
    from srha_hf.training.results import training_time_fields
    from srha_hf.training.trainer import _cumulative_note

    # resumed at step 300 of 1600 from a checkpoint that recorded 250.5 s: 1300 steps in 1149.6 s here
    timing = training_time_fields(1149.6, 1300, 250.5, 0)
    assert timing == {"training_time_s": 1400.1, "training_time_from_step": 0, "training_time_this_process_s": 1149.6,
                      "steps_this_process": 1300, "train_it_per_s": round(1300 / 1149.6, 4)}  # fmt: skip
    assert _cumulative_note(timing, 1600) == "; 1400.1 s over all 1600 steps, with the earlier processes'"
    assert _cumulative_note(training_time_fields(10.0, 20, 0.0, 0), 20) == ""  # a fresh run
    # resumed from a checkpoint that predates the record: the time counts from its step, and says so
    old = training_time_fields(1149.6, 1300, 0.0, 300)
    assert old["training_time_s"] == 1149.6 and old["training_time_from_step"] == 300
    assert _cumulative_note(old, 1600) == "; 1149.6 s from step 300 (earlier steps' time not recorded)"
    config = load_config(None, {"max_iter": 1600})
    card = training_card_fields(config, SRHAConfig(backbone="shufflenetv2"), num_processes=1, hardware="CPU",
                                training_time=1149.6, training_time_from_step=300)  # fmt: skip
    assert card["training_time"] == "1150 s (steps 300-1600 only)"
    card = training_card_fields(config, SRHAConfig(backbone="shufflenetv2"), num_processes=1, hardware="CPU", training_time=7200.0)
    assert card["training_time"] == "2.00 h"


@pytest.mark.slow  # a subprocess test
def test_accumulating_run_logs_and_resumes_exactly_after_a_kill(synthetic_root, tmp_path):
    extra = ("--total_batch_size", "4", "--max_iter", "2", "--checkpointing_steps", "1", "--val_datasets", "cityscapes",
             "--eval_select_on", "source", "--eval_steps", "1", "--eval_scales", "[0.5, 1.0]")  # fmt: skip
    full = tmp_path / "full"
    out = launch(run_args(synthetic_root, full, *extra))
    assert "batch: 2 per process x 1 process(es) x 2 accumulation step(s) = 4 images per optimizer step (recipe's total_batch_size 4)" in out.stdout
    state = json.loads((full / "checkpoint-1" / "trainer_state.json").read_text())
    assert (state["batch_in_epoch"], state["accumulation_steps"]) == (2, 2)  # checkpoints only on optimizer steps
    history = json.loads((full / "eval_history.json").read_text())
    assert history["select_on"] == "source" and [list(e["mean_iou"]) for e in history["evaluations"]] == [["gtav"]]
    final = json.loads((full / "eval" / "eval_results.json").read_text())
    assert final["results"]["cityscapes"]["protocol"]["scales"] == [0.5, 1.0] and final["checkpoint"] == "last iteration"
    card = (full / "model" / "README.md").read_text()
    assert "multi-scale (0.5, 1)" in card and "| published model | the last iteration (step 2)" in card and "total batch 4 (recipe)" in card

    broken = tmp_path / "broken"
    kill_when(run_args(synthetic_root, broken, *extra), broken / "checkpoint-1" / "trainer_state.json")
    saved = json.loads((broken / "checkpoint-1" / "trainer_state.json").read_text())
    assert (saved["step"], saved["batch_in_epoch"], saved["accumulation_steps"]) == (1, 2, 2)  # on an optimizer step
    resumed = launch(run_args(synthetic_root, broken, *extra, "--resume_from_checkpoint", "latest"))
    assert re.search(r"resumed from .*checkpoint-1 at step 1", resumed.stdout)
    a, b = load_file(full / "model" / "model.safetensors"), load_file(broken / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = launch(run_args(synthetic_root, broken, *extra[:-6], "--total_batch_size", "2", "--resume_from_checkpoint", str(broken / "checkpoint-1")),
                   check=False)  # fmt: skip
    assert other.returncode != 0 and "written with 2 micro-batch(es) per step, this run has 1" in other.stdout + other.stderr

"""The probes of experiments/: bn_probe.py's BN re-estimate is a cumulative average of each layer's batch
statistics over original images and leaves layer0 alone, a sweep without the run is refused by name;
pc_probe.py reads the sweep's own recipe (a variant's benchmark), not the demo's."""

from pathlib import Path

import pytest
import torch

from experiments import bn_probe, pc_probe
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation


def test_reestimate_bn_averages_each_layers_batch_statistics():
    probe = bn_probe
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2"))
    layer0 = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("layer0")}
    names = ["layer2.0.branch1.1", "bot_aspp.1"]  # one in the backbone, one in the head
    seen = {name: [] for name in names}
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_pre_hook(lambda m, inp, n=n: seen[n].append(inp[0].detach().clone())) for n in names]
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(2, 3, 64, 64, generator=gen) * (1 + b) for b in range(3)]
    count = probe.reestimate_bn(model, batches)
    for h in hooks:
        h.remove()
    assert count == sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not n.startswith("layer0") for n, m in model.named_modules())
    assert not model.training
    for name in names:
        bn = modules[name]
        means = [x.transpose(0, 1).flatten(1).mean(1) for x in seen[name]]  # per batch, per channel (a plain average)
        variances = [x.transpose(0, 1).flatten(1).var(1, unbiased=True) for x in seen[name]]
        assert len(means) == 3
        torch.testing.assert_close(bn.running_mean, sum(means) / 3, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, sum(variances) / 3, rtol=1e-4, atol=1e-5)
        assert int(bn.num_batches_tracked) == 3
    for key, value in model.state_dict().items():
        if key.startswith("layer0"):
            assert torch.equal(value, layer0[key]), key


def test_a_sweep_without_the_run_is_refused(tmp_path):
    probe = bn_probe
    with pytest.raises(SystemExit, match=r"run the sweep first .*srm[/\\]seed305"):
        probe.main([str(tmp_path), "--seed", "305", "--rows", "srm"])


def test_pc_probe_reads_the_sweeps_own_recipe(tmp_path):
    """A run folder from before train_config.yaml: the demo recipe; a variant's saved config, including one saved
    while the trial keys were training-config keys: its own recipe (the trial key read by experiments)."""
    import yaml

    from srha_hf.training import load_config
    from srha_hf.training.config import save_config

    probe = pc_probe
    demo = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    run = tmp_path / "full" / "seed305"
    run.mkdir(parents=True)
    assert probe.recipe(run, 305) == load_config(demo, {"seed": 305})  # a run folder from before train_config.yaml
    variant = load_config(demo, {"seed": 305, "synthetic_root": "outputs/synthetic_pat25"})
    save_config(variant, run / "train_config.yaml")
    got = probe.recipe(run, 305)
    assert (got.synthetic_root, got.seed) == ("outputs/synthetic_pat25", 305)
    old = {**variant.to_dict(), "synthetic_class_pattern": 25.0, "synthetic_class_colour_spread": 0.0, "synthetic_random_look": False}
    (run / "train_config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    assert probe.recipe(run, 305) == got

"""The teacher starts as the student and the pretraining stage (the offline stand-in for ImageNet weights)
initialises student and teacher (the ablation rows' own objectives: experiments/tests/test_ablation_rows.py)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_train import launch, run_args

import srha_hf
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, build_teacher, compute_srha_loss, uses_teacher
from srha_hf.data.synthetic_scene import SHIPPED, Appearance
from srha_hf.training import load_config, parse_overrides
from srha_hf.training.pretrain import BACKBONE_FILE, STAGE_FILE, stage_appearance, stage_config, stage_dir

ROOT = Path(__file__).resolve().parents[1]


class _Marked(Appearance):
    """A look that names itself in its marker (as a trial benchmark's does)."""

    def __init__(self, marker: dict):
        super().__init__()
        self._marker = marker

    def marker(self) -> dict:
        return dict(self._marker)


def tiny(**kw):
    return SRHAConfig(backbone="mobilenetv2", **kw)


def street_batch(gen, batch=2, size=64):
    labels = torch.randint(0, 19, (batch, size // 8, size // 8), generator=gen)
    labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
    labels[:, :4] = 255
    return torch.randn(batch, 3, size, size, generator=gen), labels


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_teacher_starts_as_a_copy_of_the_random_student():
    torch.manual_seed(0)
    student = SRHAForSemanticSegmentation(tiny())
    teacher = build_teacher(student.config, student)
    assert_same_weights(teacher.model, student)
    # without the student it is an unrelated random draw, which is what the trainer no longer does
    other = build_teacher(student.config)
    assert not torch.equal(other.model.layer2[0].conv[0][0].weight, student.layer2[0].conv[0][0].weight)
    # a student of another architecture is refused with a clear message
    with pytest.raises(ValueError, match="does not match the teacher's config"):
        build_teacher(tiny(aspp_channels=64), student)


def test_teacher_starts_as_the_pretrained_student_and_stays_fixed(tmp_path):
    import torchvision

    tv = torchvision.models.mobilenet_v2(weights=None)
    path = tmp_path / "mbv2.pth"
    torch.save(tv.state_dict(), path)
    student = SRHAForSemanticSegmentation(tiny(backbone_pretrained=str(path))).train()
    teacher = build_teacher(student.config, student)
    assert_same_weights(teacher.model, student)
    assert torch.equal(teacher.model.layer3[0].conv[0][0].weight, tv.features[11].conv[0][0].weight)
    assert teacher.model.config.backbone_pretrained_source == str(path)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.05)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):  # two steps with EMA off (the faithful alpha = 1)
        x, labels = street_batch(gen)
        loss, _ = compute_srha_loss(student, teacher, x, labels, generator=gen)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        srha_hf.update_teacher_ema(teacher, student, 0, student.config.teacher_ema_alpha)
    for key, value in teacher.model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, before[key]), key
    assert not torch.equal(student.layer3[0].conv[0][0].weight, before["layer3.0.conv.0.0.weight"])


def test_alignment_without_a_teacher_is_refused():
    student = SRHAForSemanticSegmentation(tiny()).train()
    x, labels = street_batch(torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="no teacher was given"):
        compute_srha_loss(student, None, x, labels)


# The demo's recipe before it started from ImageNet: ShuffleNetV2 from a 300-step pretraining stage.
STAND_IN = {"backbone": "shufflenetv2", "backbone_pretrained": None, "pretrain_steps": 300}


def stand_in(**overrides):
    return load_config(ROOT / "configs" / "demo.yaml", {**STAND_IN, **overrides})


def test_the_demo_runs_full_srha_from_imagenet():
    demo = load_config(ROOT / "configs" / "demo.yaml")
    assert (demo.backbone, demo.backbone_pretrained, demo.pretrain_steps) == ("efficientnet_lite0", "imagenet", 0) and demo.eval_source
    mc = demo.model_config()
    # full SRHA at the paper's weights with the reference's objective (no pc_stop_gradient)
    assert mc.srm and mc.pc_weight == 10 and uses_teacher(mc) and demo.model_kwargs == {} and not mc.pc_stop_gradient


def test_the_pretraining_stage_stands_in_for_imagenet():
    demo = stand_in()
    stage = stage_config(demo)
    smc = stage.model_config()
    assert (stage.max_iter, stage.pretrain_steps, stage.val_datasets) == (demo.pretrain_steps, 0, ["gtav"])
    assert not smc.srm and smc.pc_weight == 0 and not uses_teacher(smc) and not smc.freeze_layer0
    # the cache folder depends on what the stage learns, not on where the run writes
    assert stage_dir(demo) == stage_dir(stand_in(output_dir="elsewhere", max_iter=5))
    assert stage_dir(demo) != stage_dir(stand_in(seed=1))
    assert stage_dir(demo) != stage_dir(stand_in(lr=0.01))
    how = {"num_workers": 1, "eval_batch_size": 2, "synthetic_root": "/elsewhere", "eval_drop_remainder": False}
    assert stage_dir(demo).name == stage_dir(stand_in(**how)).name
    # the cache name of the demo's stage as it was before the later learning keys existed; a trial benchmark's
    # look (an Appearance hook with a marker) changes it, the shipped look does not
    assert stage_dir(demo).name == "shufflenetv2-gtav-300steps-8635897d0b3d"
    assert stage_dir(demo, SHIPPED) == stage_dir(demo) == stage_dir(demo, Appearance())
    assert stage_dir(demo, _Marked({"class_pattern": 25.0})) != stage_dir(demo)
    assert stage_dir(demo, _Marked({"class_pattern": 25.0})) != stage_dir(demo, _Marked({"class_pattern": 30.0}))
    with pytest.raises(Exception, match="are alternatives"):
        load_config(ROOT / "configs" / "demo.yaml", parse_overrides(["--pretrain_steps", "300"]))


def test_a_generic_stage_trains_on_its_own_corpus():
    """pretrain_data: generic: the stage trains and validates on <synthetic_root>/generic (GTAV format, random
    look per image), the run itself still on its source; another cache key; bad values are refused by name."""
    from srha_hf.training.config import ConfigError

    demo = stand_in()
    generic = stand_in(pretrain_data="generic", synthetic_root="/data/synth")
    stage = stage_config(generic)
    assert (stage.source_dataset, stage.val_datasets) == ("gtav", ["gtav"])
    assert Path(stage.synthetic_root) == Path("/data/synth/generic") and Path(stage_config(demo).synthetic_root) != Path("/data/synth/generic")
    assert (generic.source_dataset, generic.synthetic_root) == ("gtav", "/data/synth")
    # the stage paints the generic corpus: the shipped generic look, or a trial look's own generic version
    assert stage_appearance(generic) is not None and stage_appearance(generic).generic and stage_appearance(demo) is None
    assert stage_appearance(generic, _Marked({"class_pattern": 25.0})).marker() == {"random_look": True}
    assert stage_dir(generic).parent == Path("/data/synth/pretrained") and stage_dir(generic).name != stage_dir(demo).name
    with pytest.raises(ConfigError, match="pretrain_data must be 'source' or 'generic', got 'imagenet'"):
        load_config(ROOT / "configs" / "demo.yaml", {"pretrain_data": "imagenet"})
    with pytest.raises(ConfigError, match="pretrain_data: generic trains the stage on a synthetic corpus: it needs synthetic_data: true"):
        load_config(ROOT / "configs" / "demo.yaml", {"pretrain_data": "generic", "synthetic_data": False})


@pytest.mark.slow  # a subprocess / torchrun test
def test_pretraining_stage_initialises_student_and_teacher(synthetic_root, tmp_path):

    cache = tmp_path / "stage"
    out_dir = tmp_path / "run"
    args = run_args(synthetic_root, out_dir, "--max_iter", "2", "--checkpointing_steps", "0", "--val_datasets", "cityscapes")
    args += ["--pretrain_steps", "2", "--pretrain_dir", str(cache), "--eval_source", "true"]
    out = launch(args)
    folders = list(cache.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("shufflenetv2-gtav-2steps-")
    stage = json.loads((folders[0] / STAGE_FILE).read_text())
    assert stage["steps"] == 2 and 0 <= stage["source_val_miou"] <= 100
    backbone = load_file(folders[0] / BACKBONE_FILE)
    assert {k.split(".")[0] for k in backbone} == {"layer0", "layer1", "layer2", "layer3", "layer4"}
    # the stage trained layer0 (the SRHA run then freezes it): it moved away from any fresh draw
    stage_model = load_file(folders[0] / "run" / "model" / "model.safetensors")
    assert all(torch.equal(backbone[k], stage_model[k]) for k in backbone)
    trained = load_file(out_dir / "model" / "model.safetensors")
    # frozen layer0 of the SRHA run is exactly the stage's (its BN in eval mode, no gradients)
    for key in backbone:
        if key.startswith("layer0"):
            assert torch.equal(trained[key], backbone[key]), key
    assert "pretraining stage done" in out.stdout and "(source val)" in out.stdout and "mean over targets" in out.stdout
    results = json.loads((out_dir / "all_results.json").read_text())
    assert set(results["results"]) == {"cityscapes", "gtav"}
    assert abs(results["mean_target_miou"] - results["results"]["cityscapes"]["mean_iou"] * 100) < 0.01
    card = (out_dir / "model" / "README.md").read_text()
    assert "pretraining stage (2 plain steps" in card
    # a second run reuses the cached stage
    again = launch(
        run_args(synthetic_root, tmp_path / "again", "--max_iter", "1", "--checkpointing_steps", "0", "--val_datasets", "cityscapes",
                 "--pretrain_steps", "2", "--pretrain_dir", str(cache))  # fmt: skip
    )
    assert "pretraining stage: reusing" in again.stdout and len(list(cache.iterdir())) == 1


@pytest.mark.slow  # a subprocess test
def test_a_generic_stage_is_trained_on_the_corpus_it_writes(tmp_path):
    """pretrain_data: generic end to end: the corpus is written under <synthetic_root>/generic with a random look,
    the stage trains and validates on it, and the run itself trains on the benchmark."""
    from srha_hf.data.synthetic import MARKER, make_synthetic_benchmark

    root = tmp_path / "synthetic"
    make_synthetic_benchmark(root, num_train=8, num_val=3, size=(160, 88))
    args = run_args(root, tmp_path / "run", "--max_iter", "1", "--checkpointing_steps", "0", "--val_datasets", "cityscapes")
    out = launch(args + ["--pretrain_steps", "1", "--pretrain_data", "generic"])
    corpus = json.loads((root / "generic" / MARKER).read_text())
    assert corpus["random_look"] is True and corpus["num_train"] == 8 and corpus["size"] == [160, 88]
    (folder,) = (root / "pretrained").iterdir()
    stage = json.loads((folder / STAGE_FILE).read_text())
    assert stage["pretrain_data"] == "generic" and stage["settings"]["synthetic_root"] == str(root / "generic")
    assert "plain DeepLabV3+ on the generic corpus" in out.stdout
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "pretraining stage (1 plain steps on a generic synthetic corpus" in card


def test_backbone_file_loads_like_an_imagenet_file(tmp_path):
    """The stage's file (staged keys, safetensors) goes through the same loader as ImageNet weights."""
    donor = SRHAForSemanticSegmentation(tiny(freeze_layer0=False))
    staged = {k: v for k, v in donor.state_dict().items() if k.split(".")[0].startswith("layer")}
    path = tmp_path / BACKBONE_FILE
    save_file({k: v.contiguous() for k, v in staged.items()}, str(path))
    student = SRHAForSemanticSegmentation(tiny(backbone_pretrained=str(path)))
    for key, value in staged.items():
        assert torch.equal(student.state_dict()[key], value), key

"""Evaluation under common corruptions (docs/method.md §8.8): the corruption names and seeds, each image
corrupted as the package does under its seed, identical results across runs, DataLoader workers and
processes, the summary from its formulas, the command line's JSON, heatmap, model card and resume, and the
error when the extra is missing."""

import hashlib
import json
import os
import statistics
import sys

import numpy as np
import pytest
import torch
from eval_helpers import SYNTH, PaletteModel, check, torchrun, write_model_and_benchmark
from interop_helpers import load_script
from PIL import Image

from srha_hf import SRHAForSemanticSegmentation, evaluate_corruptions
from srha_hf.corruptions import (
    ALL_CORRUPTIONS,
    CITYSCAPES_C,
    FAMILIES,
    Corruption,
    MissingExtraError,
    corrupt_image,
    corruption_seed,
    require_imagecorruptions,
    resolve_corruptions,
    resolve_severities,
    summarise_corruptions,
)
from srha_hf.data import load_benchmark
from srha_hf.data.synthetic import synthetic_eval_sizes

pytestmark = pytest.mark.usefixtures("one_thread")
if os.environ.get("SRHA_REQUIRE_ROBUSTNESS"):  # CI (.ci/run): the extra must be there, not skipped
    import imagecorruptions
else:
    imagecorruptions = pytest.importorskip("imagecorruptions", reason="the robustness extra (imagecorruptions-imaug) is not installed")

SIZES = synthetic_eval_sizes(SYNTH["size"])
FEW = ["gaussian_noise", "impulse_noise", "motion_blur", "frost", "fog", "jpeg_compression"]  # in the order of ALL_CORRUPTIONS


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = write_model_and_benchmark(tmp_path_factory.mktemp("corruptions"))
    datasets = {name: load_benchmark(name, str(root / "data" / name), "val") for name in ("cityscapes", "gtav")}
    return root, datasets


@pytest.fixture(scope="module")
def photo():
    """A real photograph (skimage's coffee), 400x600, so the corruptions act on real image statistics."""
    from skimage import data

    return np.ascontiguousarray(data.coffee()[:200, :320])


# ---- names, severities, seeds ---------------------------------------------------------------------------------


def test_the_names_are_the_packages_and_the_published_sixteen():
    assert set(ALL_CORRUPTIONS) == set(imagecorruptions.get_corruption_names("all")) and len(ALL_CORRUPTIONS) == 19
    assert sorted(n for names in FAMILIES.values() for n in names) == sorted(ALL_CORRUPTIONS)
    assert len(CITYSCAPES_C) == 16 and set(CITYSCAPES_C) <= set(ALL_CORRUPTIONS)
    assert not {"zoom_blur", "elastic_transform", "pixelate"} & set(CITYSCAPES_C)
    for family, names in FAMILIES.items():  # four of each family in the published tables
        assert len([n for n in CITYSCAPES_C if n in names]) == 4, family


def test_resolve_corruptions_and_severities():
    assert resolve_corruptions("all") == list(ALL_CORRUPTIONS)
    assert resolve_corruptions("cityscapes-c") == resolve_corruptions("Cityscapes_C") == [n for n in ALL_CORRUPTIONS if n in CITYSCAPES_C]
    assert resolve_corruptions("fog,noise") == ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "fog"]
    assert resolve_corruptions(["snow", "snow", "brightness"]) == ["snow", "brightness"]
    with pytest.raises(ValueError, match="unknown corruption 'rain'.*weather.*gaussian_noise"):
        resolve_corruptions("fog,rain")
    assert resolve_severities([5, "1", 3, 3]) == [1, 3, 5]
    for bad in (0, 6, "x", 2.5):
        with pytest.raises(ValueError, match=f"severity {bad!r}: expected an integer from 1 to 5"):
            resolve_severities([1, bad])
    with pytest.raises(ValueError, match="unknown corruption"):
        Corruption("rain", 1)


def test_the_seed_is_the_sha256_of_image_name_corruption_severity():
    want = int.from_bytes(hashlib.sha256(b"0/aachen_000000_000019_leftImg8bit.png/fog/3").digest()[:4], "little")
    assert corruption_seed("aachen_000000_000019_leftImg8bit.png", "fog", 3) == want
    seeds = {corruption_seed(f"img{i}.png", name, s, base) for i in range(3) for name in ("fog", "snow") for s in (1, 2) for base in (0, 1)}
    assert len(seeds) == 24


@pytest.mark.parametrize("name", [n for n in ALL_CORRUPTIONS if n != "glass_blur"])
def test_each_corruption_is_the_packages_under_its_seed(photo, name):
    """corrupt_image equals the package's corrupt() after numpy's generator is seeded with the seed (and the
    seed passed to the functions that take one); numpy's global state is left as it was."""
    seed, severity = corruption_seed("photo.png", name, 4), 4
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    got = corrupt_image(photo, name, severity, seed)
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(seed)
    kwargs = {"seed": seed} if name == "impulse_noise" else {}
    want = imagecorruptions.corrupt(photo.copy(), severity=severity, corruption_name=name, **kwargs)
    assert got.dtype == np.uint8 and got.shape == photo.shape
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(corrupt_image(photo, name, severity, seed), got)  # the same seed: the same image
    assert not np.array_equal(got, photo)


def test_glass_blur_is_seeded_too(photo):
    small = np.ascontiguousarray(photo[:48, :64])
    a, b = corrupt_image(small, "glass_blur", 1, 7), corrupt_image(small, "glass_blur", 1, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, corrupt_image(small, "glass_blur", 1, 8))


def test_noise_differs_between_seeds_and_bad_images_are_refused(photo):
    assert not np.array_equal(corrupt_image(photo, "shot_noise", 2, 1), corrupt_image(photo, "shot_noise", 2, 2))
    with pytest.raises(ValueError, match="32 px or more"):
        corrupt_image(photo[:20], "fog", 1, 0)
    with pytest.raises(ValueError, match="HxWx3"):
        corrupt_image(photo[..., 0], "fog", 1, 0)


def test_missing_extra_is_named(monkeypatch, bench):
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)  # `import imagecorruptions` raises ImportError
    with pytest.raises(MissingExtraError, match=r'pip install "srha_hf\[robustness\]"'):
        require_imagecorruptions()
    calls = []
    monkeypatch.setattr("srha_hf.evaluation.evaluate_model", lambda *a, **k: calls.append(1))
    with pytest.raises(MissingExtraError, match="imagecorruptions-imaug"):
        evaluate_corruptions(PaletteModel(), bench[1], "fog", [1])
    assert calls == []  # before any work


# ---- the summary --------------------------------------------------------------------------------------------


def test_summary_follows_its_formulas():
    rng = np.random.default_rng(0)
    names = ["gaussian_noise", "shot_noise", "fog", "snow", "contrast"]
    table = {n: {str(s): float(rng.uniform(0.1, 0.6)) for s in (1, 3, 5)} for n in names}
    clean = 0.7
    got = summarise_corruptions(clean, table)
    for n in names:
        assert got["per_corruption"][n] == pytest.approx(statistics.fmean(table[n].values()), abs=1e-15)
        assert got["relative"]["per_corruption"][n] == pytest.approx(got["per_corruption"][n] / clean)
    assert got["per_family"] == pytest.approx(
        {
            "noise": (got["per_corruption"]["gaussian_noise"] + got["per_corruption"]["shot_noise"]) / 2,
            "weather": (got["per_corruption"]["fog"] + got["per_corruption"]["snow"]) / 2,
            "digital": got["per_corruption"]["contrast"],
        }
    )
    cells = [v for by in table.values() for v in by.values()]
    assert got["mean"] == pytest.approx(sum(cells) / 15) and got["relative"]["mean"] == pytest.approx(sum(cells) / 15 / clean)
    assert got["per_severity"]["3"] == pytest.approx(sum(table[n]["3"] for n in names) / 5)
    assert got["clean"] == clean


# ---- evaluation ---------------------------------------------------------------------------------------------


def matrices(result):
    return {key: {c: {s: r["confusion_matrix"] for s, r in by.items()} for c, by in entry["corrupted"].items()} for key, entry in result.items()}


@pytest.mark.integration
def test_two_runs_and_dataloader_workers_give_identical_results(bench):
    _, datasets = bench
    model = PaletteModel()
    kw = dict(eval_sizes=SIZES, progress=False)
    first = evaluate_corruptions(model, datasets, FEW, [1, 5], **kw)
    again = evaluate_corruptions(model, datasets, FEW, [1, 5], **kw)
    workers = evaluate_corruptions(model, datasets, FEW, [1, 5], num_workers=2, batch_size=2, **kw)
    assert matrices(first) == matrices(again) == matrices(workers)
    for key, entry in first.items():
        assert entry["corruptions"] == FEW and entry["severities"] == [1, 5] and entry["seed"] == 0
        assert entry["package"].startswith("imagecorruptions")
        alone = evaluate_corruptions(model, {key: datasets[key]}, "fog", [1], **kw)[key]
        assert alone["clean"]["confusion_matrix"] == entry["clean"]["confusion_matrix"]
        assert alone["corrupted"]["fog"]["1"]["confusion_matrix"] == entry["corrupted"]["fog"]["1"]["confusion_matrix"]
        changed = [c for c, by in entry["corrupted"].items() if by["5"]["confusion_matrix"] != entry["clean"]["confusion_matrix"]]
        assert len(changed) == len(FEW), changed  # every corruption moves the predictions at severity 5
        assert entry["corrupted"]["fog"]["1"]["corruption"] == {"name": "fog", "severity": 1, "seed": 0}
    other_seed = evaluate_corruptions(model, datasets, ["gaussian_noise"], [5], seed=1, **kw)["cityscapes"]
    noise = first["cityscapes"]["corrupted"]["gaussian_noise"]["5"]
    assert other_seed["corrupted"]["gaussian_noise"]["5"]["confusion_matrix"] != noise["confusion_matrix"]


@pytest.mark.integration
def test_images_are_corrupted_after_the_evaluation_resizing(bench):
    """What the model sees is the resized image corrupted under its own seed (checked pixel for pixel)."""
    from srha_hf.evaluation import EvalDataset, eval_transform

    _, datasets = bench
    ds = datasets["gtav"]
    transform = eval_transform("gtav", "faithful", SIZES)
    clean = EvalDataset(ds, [2], transform, "gtav")
    corrupted = EvalDataset(ds, [2], transform, "gtav", corruption=Corruption("snow", 3, 5))
    image, _, path = clean.load(0, with_path=True)
    pixels = corrupted[0][0]
    seed = corruption_seed(path.split("/")[-1], "snow", 3, 5)
    want = corrupt_image(np.asarray(image), "snow", 3, seed)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    back = (pixels * std + mean) * 255
    np.testing.assert_allclose(back.permute(1, 2, 0).numpy(), want.astype(np.float32), atol=1e-3)


def cli_args(root, out, *extra):
    return [str(a) for a in ["--model", root / "model", "--dataset", "cityscapes", "gtav", "--data_root", root / "data",
                             "--output_json", out, "--synthetic_size", *SYNTH["size"], "--no_progress", "--num_overlays", "0",
                             "--corruptions", "noise,fog", "--severities", "1", "3", *extra]]  # fmt: skip


@pytest.mark.integration
def test_the_command_line_writes_json_heatmap_and_model_card(bench, script, tmp_path, capsys):
    from huggingface_hub import ModelCard

    root, datasets = bench
    out, card = tmp_path / "run" / "results.json", tmp_path / "card" / "README.md"
    card.parent.mkdir()
    card.write_text("---\nlicense: apache-2.0\n---\n\n# my model\n\nWords the owner wrote.\n")
    assert script.main(cli_args(root, out, "--model_card", card)) == 0
    printed = capsys.readouterr().out
    assert "### cityscapes under corruptions" in printed and "| gaussian_noise | noise |" in printed
    saved = json.loads(out.read_text())
    assert saved["corruptions"]["cityscapes"]["corruptions"] == ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "fog"]
    assert saved["severities"] == [1, 3] and saved["corruption_seed"] == 0
    model = SRHAForSemanticSegmentation.from_pretrained(str(root / "model"))
    direct = evaluate_corruptions(model, datasets, "noise,fog", [1, 3], eval_sizes=SIZES, progress=False)
    for key in ("cityscapes", "gtav"):
        entry = saved["corruptions"][key]
        assert saved["results"][key]["confusion_matrix"] == direct[key]["clean"]["confusion_matrix"]
        assert entry["mean_iou"]["fog"]["3"] == direct[key]["corrupted"]["fog"]["3"]["mean_iou"]
        assert entry["summary"]["mean"] == pytest.approx(direct[key]["summary"]["mean"], abs=1e-12)
        assert set(entry["summary"]["per_family"]) == {"noise", "weather"}
        with Image.open(saved["files"][key]["corruptions_png"]) as png:
            assert png.format == "PNG" and png.size[1] > 200
        assert (out.parent / f"{key}_corruptions.md").read_text().startswith(f"### {key} under corruptions")
    assert not (out.parent / "results.json.partial.json").exists()
    loaded = ModelCard.load(card)
    assert "Words the owner wrote." in loaded.text and loaded.text.count("## Robustness under common corruptions") == 1
    metrics = {(r.dataset_type, r.metric_type): r.metric_value for r in loaded.data.eval_results}
    assert {r.dataset_config for r in loaded.data.eval_results} == {"5 common corruptions, severities 1, 3"}
    assert metrics[("cityscapes", "mean_iou")] == pytest.approx(saved["corruptions"]["cityscapes"]["summary"]["mean"], abs=1e-6)
    assert metrics[("gtav", "relative_robustness")] == pytest.approx(saved["corruptions"]["gtav"]["summary"]["relative"]["mean"], abs=1e-6)
    assert loaded.data.license == "apache-2.0"
    # a second run replaces the section and the results instead of adding to them
    assert script.main(cli_args(root, tmp_path / "again.json", "--model_card", card)) == 0
    loaded = ModelCard.load(card)
    assert loaded.text.count("## Robustness under common corruptions") == 1 and len(loaded.data.eval_results) == 4


@pytest.mark.integration
def test_an_interrupted_run_resumes_from_its_finished_cells(bench, script, tmp_path, monkeypatch, capsys):
    import srha_hf.evaluation as evaluation

    root, _ = bench
    whole = tmp_path / "whole.json"
    assert script.main(cli_args(root, whole)) == 0
    real, calls = evaluation.evaluate_model, []

    def dies_after_three(*args, **kwargs):
        calls.append(kwargs.get("corruption"))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "resumed.json"
    monkeypatch.setattr(evaluation, "evaluate_model", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        script.main(cli_args(root, out))
    partial = json.loads((tmp_path / "resumed.json.partial.json").read_text())
    assert partial["clean"] is not None and sum(len(v) for v in partial["cells"].values()) == 2
    monkeypatch.setattr(evaluation, "evaluate_model", real)
    counted = []
    monkeypatch.setattr(evaluation, "evaluate_model", lambda *a, **k: counted.append(k.get("corruption")) or real(*a, **k))
    assert script.main(cli_args(root, out)) == 0
    assert "resuming from" in capsys.readouterr().out and len(counted) == 10 - 2  # 5 corruptions x 2 severities, 2 done
    a, b = json.loads(whole.read_text()), json.loads(out.read_text())
    assert a["corruptions"] == b["corruptions"]
    assert {k: r["confusion_matrix"] for k, r in a["results"].items()} == {k: r["confusion_matrix"] for k, r in b["results"].items()}


@pytest.mark.integration
def test_saved_predictions_come_from_the_one_clean_pass(bench, script, tmp_path, monkeypatch):
    """--save_predictions with --corruptions writes the clean predictions, evaluating clean once."""
    import srha_hf.evaluation as evaluation

    root, _ = bench
    real, calls = evaluation.evaluate_model, []
    monkeypatch.setattr(evaluation, "evaluate_model", lambda *a, **k: calls.append(k.get("corruption")) or real(*a, **k))
    args = cli_args(root, tmp_path / "r.json", "--save_predictions", tmp_path / "pred")
    args[args.index("--corruptions") + 1] = "fog"
    del args[args.index("--severities") + 2]  # severity 1 alone
    assert script.main(args) == 0
    assert calls.count(None) == 1 and len(calls) == 2  # clean once, then fog at severity 1
    saved = json.loads((tmp_path / "r.json").read_text())
    assert len(saved["results"]["cityscapes"]["prediction_files"]) == SYNTH["num_val"]
    assert len(list((tmp_path / "pred" / "cityscapes").rglob("*.png"))) == SYNTH["num_val"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--corruptions", "rain"], "--corruptions rain: unknown corruption 'rain'"),
        (["--corruptions", "fog", "--severities", "7"], "--severities: severity 7: expected an integer from 1 to 5"),
        (["--severities", "1"], "--severities needs --corruptions"),
    ],
)
def test_command_line_errors(bench, script, tmp_path, capsys, extra, message):
    root, _ = bench
    args = [str(a) for a in ["--model", root / "model", "--dataset", "cityscapes", "--data_root", root / "data",
                             "--output_json", tmp_path / "x.json", *extra]]  # fmt: skip
    assert script.main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_command_line_names_the_missing_extra(bench, script, tmp_path, capsys, monkeypatch):
    root, _ = bench
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)
    args = cli_args(root, tmp_path / "x.json")
    assert script.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --corruptions:") and 'pip install "srha_hf[robustness]"' in err


@pytest.mark.slow  # torchrun
def test_two_processes_give_the_one_process_result(bench, tmp_path):
    """scripts/evaluate.py under torchrun --nproc_per_node 2 with --corruptions: every cell's confusion-derived
    numbers equal those of one process (5 images: an odd split)."""
    root, _ = bench
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    check(torchrun(["scripts/evaluate.py", *cli_args(root, two)]))
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    assert load_script("evaluate").main(cli_args(root, one)) == 0
    AcceleratorState._reset_state(True)
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["num_processes"], b["num_processes"]) == (1, 2)
    assert a["corruptions"] == b["corruptions"]
    assert a["results"]["cityscapes"]["confusion_matrix"] == b["results"]["cityscapes"]["confusion_matrix"]

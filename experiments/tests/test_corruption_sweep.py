"""experiments/corruption_sweep.py: the per-run record from an evaluate_corruptions result, and the report's
tables (means over seeds, paired differences against plain, the schedule table) against hand-computed values."""

import json
import statistics

import pytest

from experiments import corruption_sweep as sweep


def fake_evaluated(clean: float, cells: dict) -> dict:
    """An evaluate_corruptions-shaped result for one dataset (fractions)."""
    from srha_hf.corruptions import summarise_corruptions

    per_class = {"road": 0.5, "car": float("nan")}
    return {
        "clean": {"mean_iou": clean, "per_category_iou": per_class},
        "corrupted": {c: {s: {"mean_iou": v, "per_category_iou": per_class} for s, v in by.items()} for c, by in cells.items()},
        "summary": summarise_corruptions(clean, cells),
        "corruptions": list(cells),
        "severities": [1, 5],
        "seed": 0,
        "package": "imagecorruptions-imaug 1.1.5",
    }


def record(sweep_name, row, seed, clean, cells, targets_mean, source):
    trained = {"miou": {"gtav": source, "cityscapes": 100 * clean}, "target_mean": targets_mean, "train_time_s": 100.0 + seed}
    evaluated = {name: fake_evaluated(clean, cells) for name in sweep.DATASETS}
    return sweep.make_record(sweep_name, row, seed, trained, evaluated, 12.5)


CELLS = {
    "plain": {"brightness": {"1": 0.40, "5": 0.30}, "gaussian_noise": {"1": 0.35, "5": 0.10}},
    "full": {"brightness": {"1": 0.38, "5": 0.33}, "gaussian_noise": {"1": 0.30, "5": 0.12}},
}


@pytest.fixture
def records(tmp_path):
    folder = tmp_path / "records"
    for sweep_name, seeds in (("ablation", (304, 305)), ("steps800", (304,))):
        for row in ("plain", "full"):
            for seed in seeds:
                shift = 0.01 * (seed - 304)
                cells = {c: {s: v + shift for s, v in by.items()} for c, by in CELLS[row].items()}
                clean = (0.45 if row == "plain" else 0.40) + shift
                rec = record(sweep_name, row, seed, clean, cells, 40.0 - (row == "full") * 5 + seed - 304, 50.0 + seed - 304)
                path = sweep.record_path(folder, sweep_name, row, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rec))
    return folder


def test_the_record_holds_points_and_the_summaries():
    rec = record("ablation", "plain", 304, 0.45, CELLS["plain"], 40.0, 50.0)
    d = rec["datasets"]["cityscapes"]
    assert rec["steps"] == 200 and rec["set"] == {} and rec["corruptions"] == ["brightness", "gaussian_noise"]
    assert d["clean"] == pytest.approx(45.0) and d["cells"]["gaussian_noise"]["5"] == pytest.approx(10.0)
    assert d["mean"] == pytest.approx(100 * statistics.fmean([0.40, 0.30, 0.35, 0.10]))
    assert d["per_family"] == pytest.approx({"noise": 22.5, "digital": 35.0})
    assert d["per_class_iou"]["brightness"]["1"]["car"] is None  # NaN (absent class) as null
    assert rec["eval_seconds"] == 12.5 and rec["training"]["target_mean"] == 40.0


def test_the_report_means_pairs_and_schedule(records, tmp_path):
    result = sweep.report(records, tmp_path / "out")
    md = result["markdown"]
    assert result["records"] == {"ablation": 4, "steps800": 2}
    # plain on cityscapes, seeds 304 / 305: clean 45 / 46, all-cells mean 28.75 / 29.75
    plain_line = next(line for line in md.splitlines() if line.startswith("| DeepLabV3+ (CE + aux) | 45.5 ± 0.7"))
    assert "| **all** |" in md and "29.2 ± 0.7" in plain_line
    # full minus plain, paired: all-cells mean (38+33+30+12)/4 - (40+30+35+10)/4 = 28.25 - 28.75 = -0.5 for both seeds
    full_minus = [line for line in md.splitlines() if line.startswith("| full SRHA (SRM + HAC + PC) | -5.0")]
    assert full_minus and "-0.5" in full_minus[0]
    # appearance (brightness only here): full 35.5 vs plain 35.0; drop = clean - all
    assert "Plain and full SRHA by schedule length" in md and "| full SRHA (SRM + HAC + PC) | 800 | 304 |" in md
    schedule = next(line for line in md.splitlines() if line.startswith("| 200 | 304,305 |"))
    assert schedule.split("|")[3].strip() == "-5.0 ± 0.0"  # targets mean, full - plain
    assert (tmp_path / "out" / "table.md").read_text() == md
    # appearance, brightness: plain drops 45 - 35 = 10, full 40 - 35.5 = 4.5 at both seeds; contrast not evaluated
    appearance = [line for line in md.splitlines() if line.startswith("| target | full SRHA")]
    assert appearance == ["| target | full SRHA (SRM + HAC + PC) | -5.5 ± 0.0 | n/a | n/a | n/a | n/a | n/a |"]
    charts = [p.split("/")[-1] for p in result["charts"]]
    assert charts == [f"corruptions_{d}{part}.png" for d in ("gtav", "cityscapes") for part in ("", "_minus_plain")] + ["schedule.png"]
    assert all((tmp_path / "out" / name).stat().st_size > 0 for name in charts)


def test_the_paired_chart_range_covers_every_bar_its_error_and_zero():
    series = {"a": [-3.0, 5.0, float("nan")], "b": [0.5, 1.0, 2.0]}
    errors = {"a": [1.0, 2.0, 0.0], "b": [0.25, 0.0, 0.5]}
    assert sweep.paired_ylim(errors, series) == (-5.0, 8.0)  # -3 - 1 and 5 + 2, a point of margin each side
    assert sweep.paired_ylim({"b": [0.0]}, {"b": [2.0]}) == (-1.0, 3.0)  # zero stays in range


def test_the_schedule_points_are_means_over_seeds_and_one_length_draws_no_chart(records, tmp_path):
    runs = sweep.load_records(records)
    xs, means, stds = sweep.schedule_points(runs, "full", lambda r: r["training"]["target_mean"])
    assert xs == [200, 800] and means == pytest.approx([35.5, 35.0]) and stds == pytest.approx([0.5**0.5, 0.0])
    assert sweep.schedule_chart({"ablation": runs["ablation"]}, tmp_path / "s.png") is None
    assert not (tmp_path / "s.png").exists()


def test_records_load_in_the_ablations_row_order_and_an_unknown_row_is_named(records):
    assert list(sweep.load_records(records)["ablation"]) == ["plain", "full"]  # the files sort full-* first
    stray = sweep.record_path(records, "ablation", "mystery", 304)
    stray.write_text(json.dumps({"sweep": "ablation", "row": "mystery", "seed": 304}))
    with pytest.raises(SystemExit, match="mystery-seed304.json: row 'mystery' is not one of the ablation's rows"):
        sweep.load_records(records)


def test_a_record_made_with_other_corruptions_is_not_silently_reused(records):
    with pytest.raises(SystemExit, match="not what this run asks"):
        sweep.run_sweep("ablation", records, ["fog"], [1, 5], rows=["plain"], seeds=[304])


def test_a_single_seed_trend_point_is_read_against_the_same_seed(records, tmp_path):
    for row, targets, source in (("plain", 60.0, 75.0), ("full", 58.5, 64.0)):
        rec = record("steps1600", row, 304, 0.45 if row == "plain" else 0.40, CELLS[row], targets, source)
        path = sweep.record_path(records, "steps1600", row, 304)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    md = sweep.report(records, tmp_path / "out")["markdown"]
    trend = md[md.index("Seed 304 alone by schedule length"):].splitlines()
    # seed 304 only (the 200-step seed 305 is left out): targets 40 / 35 at 200 and 800 steps, 60 / 58.5 at 1600;
    # source 50 / 50 then 75 / 64; corrupted (all cells) 28.75 / 28.25 on both datasets at every length
    assert trend[4:7] == [
        "| 200 | 40.0 | 35.0 | -5.0 | +0.0 | +5.0 | -0.5 | -0.5 |",
        "| 800 | 40.0 | 35.0 | -5.0 | +0.0 | +5.0 | -0.5 | -0.5 |",
        "| 1600 | 60.0 | 58.5 | -1.5 | -11.0 | -9.5 | -0.5 | -0.5 |",
    ]
    assert "1600 steps, Cityscapes-format target: mIoU (%) clean and under the corruptions, seed 304 alone." in md
    assert "Cityscapes-format target (val, 20 images): mIoU (%) clean and under the corruptions, mean ± std over seeds." in md
    assert sweep.seed_trend_table(sweep.load_records(records), 306) == ""

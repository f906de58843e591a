"""srha_hf.visualization.grouped_bar_chart: what it refuses and what it writes."""

import pytest

from srha_hf.visualization import grouped_bar_chart


def test_grouped_bars_refuse_a_series_of_the_wrong_length(tmp_path):
    with pytest.raises(ValueError, match="series 'b' has 1 values for 2 groups"):
        grouped_bar_chart(["x", "y"], {"a": [1.0, 2.0], "b": [1.0]}, str(tmp_path / "c.png"))


@pytest.mark.parametrize("ylim", [(5.0, 5.0), (3.0, -3.0), (1.0,)])
def test_grouped_bars_refuse_a_range_that_is_not_low_then_high(tmp_path, ylim):
    with pytest.raises(ValueError, match="ylim must be \\(low, high\\) with low < high"):
        grouped_bar_chart(["x"], {"a": [-1.0]}, str(tmp_path / "c.png"), ylim=ylim)
    assert not (tmp_path / "c.png").exists()


def test_grouped_bars_with_negative_values_are_written_as_png(tmp_path):
    path = grouped_bar_chart(["x", "y"], {"a": [-2.0, 1.5], "b": [0.5, float("nan")]}, str(tmp_path / "c.png"),
                             errors={"a": [0.5, 0.5], "b": [0.1, 0.0]}, ylim=(-4.0, 3.0), ylabel="difference")  # fmt: skip
    assert path == str(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

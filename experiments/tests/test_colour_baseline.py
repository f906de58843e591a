"""experiments/synthetic_colour_baseline.py: the per-class Gaussian fit and its predictions against plain
loops over classes and pixels, an absent class never predicted, uint8 labels counted without overflow."""

import numpy as np
import pytest

from experiments import synthetic_colour_baseline


@pytest.fixture(scope="module")
def colour():
    return synthetic_colour_baseline


def test_fit_and_predict_equal_plain_loops(colour):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 18, size=3000)  # class 18 absent
    centres = rng.uniform(0, 255, size=(19, 3))
    colours = centres[labels] + rng.normal(scale=rng.uniform(3, 30, size=(19, 3))[labels])
    model = colour.fit(colours, labels)
    for c in range(18):
        x = colours[labels == c]
        np.testing.assert_allclose(model["mean"][c], x.mean(0), rtol=1e-10)
        np.testing.assert_allclose(np.linalg.inv(model["inv_cov"][c]), np.cov(x.T, bias=True) + np.eye(3), rtol=1e-8, atol=1e-8)
    assert model["log_prior"][18] == -np.inf

    probe = rng.uniform(0, 255, size=(200, 3))
    expected_gaussian, expected_nearest = [], []
    for x in probe:  # plain loops over pixels and classes, from the Gaussian log density
        best, best_c, near, near_c = -np.inf, -1, np.inf, -1
        for c in range(18):
            cov = np.linalg.inv(model["inv_cov"][c])
            d = x - model["mean"][c]
            score = -0.5 * d @ np.linalg.solve(cov, d) - 0.5 * np.log(np.linalg.det(cov)) + np.log((labels == c).mean())
            if score > best:
                best, best_c = score, c
            if d @ d < near:
                near, near_c = d @ d, c
        expected_gaussian.append(best_c)
        expected_nearest.append(near_c)
    np.testing.assert_array_equal(colour.predict(model, probe), expected_gaussian)
    np.testing.assert_array_equal(colour.predict(model, probe, gaussian=False), expected_nearest)
    assert (colour.predict(model, colours) == labels).mean() > 0.5


def test_confusion_counts_uint8_labels_without_overflow(colour):
    labels = np.array([18, 18, 0, 13], dtype=np.uint8)  # 18 * 19 overflows uint8
    predictions = np.array([18, 0, 0, 13])
    matrix = colour.confusion(labels, predictions)
    assert matrix[18, 18] == 1 and matrix[18, 0] == 1 and matrix[0, 0] == 1 and matrix[13, 13] == 1 and matrix.sum() == 4

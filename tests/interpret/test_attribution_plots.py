"""plot_attributions and plot_attention draw the arrays they are given, and refuse wrong shapes by name."""

from __future__ import annotations

import numpy as np
import pytest

from recurrax.interpret import plot_attention, plot_attributions

RNG = np.random.default_rng(0)
ATTRIBUTIONS = RNG.normal(size=(3, 12, 2))
INPUTS = RNG.uniform(size=(3, 12, 2))


def test_attributions_heatmap_is_the_example_and_padding_is_greyed(tmp_path):
    fig = plot_attributions(ATTRIBUTIONS, INPUTS, example=1, length=9, path=tmp_path / "a.png")
    top, heat = fig.axes[:2]
    (image,) = heat.images
    np.testing.assert_array_equal(image.get_array(), ATTRIBUTIONS[1].T)
    assert image.get_clim() == (-np.abs(ATTRIBUTIONS[1]).max(), np.abs(ATTRIBUTIONS[1]).max())
    for d, line in enumerate(top.get_lines()):
        np.testing.assert_array_equal(line.get_ydata(), INPUTS[1, :, d])
    # One shaded span per step on top, plus the grey padding span over steps 9..11 on both panels.
    assert len(top.patches) == 12 + 1 and len(heat.patches) == 1
    assert (tmp_path / "a.png").stat().st_size > 0
    assert len(plot_attributions(ATTRIBUTIONS).axes) == 2  # heatmap and its colour bar, no input panel


def test_attention_maps_one_per_head():
    weights = RNG.dirichlet(np.ones(5), size=(2, 3, 5))  # [B, N, T, S]
    fig = plot_attention(weights, example=1, heads=[0, 2])
    maps = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in maps] == ["head 0", "head 2"]
    np.testing.assert_array_equal(maps[1].images[0].get_array(), weights[1, 2])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: plot_attributions(ATTRIBUTIONS[0]), ValueError, r"attributions must be \[B, T, D\]"),
        (lambda: plot_attributions(ATTRIBUTIONS, INPUTS[:, :5]), ValueError, "inputs must have the attributions"),
        (lambda: plot_attributions(ATTRIBUTIONS, length=13), ValueError, r"length must be in \[0, 12\]"),
        (lambda: plot_attributions(ATTRIBUTIONS, example=3), IndexError, "example 3"),
        (lambda: plot_attributions(ATTRIBUTIONS, feature_names=["a"]), ValueError, "feature_names must name the 2"),
        (lambda: plot_attention(np.ones((4, 4))), ValueError, r"weights must be \[B, N, T, S\]"),
        (lambda: plot_attention(np.ones((1, 2, 4, 4)), heads=[2]), ValueError, "heads must pick among the 2"),
        (lambda: plot_attributions(ATTRIBUTIONS, path="a.pdf"), ValueError, "must end in .png"),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from companion import data, gates, viz  # noqa: E402


def test_image_grid_shape_and_range():
    grid = viz.image_grid(torch.rand(10, 1, 28, 28) * 2 - 1, nrow=5, value_range=(-1, 1))
    assert grid.shape == (2 * 28 + 3 * 2, 5 * 28 + 6 * 2, 3)
    assert grid.min() >= 0 and grid.max() <= 1


def test_plots_return_axes():
    assert viz.show_images(torch.rand(4, 1, 28, 28), nrow=2, title="t") is not None
    ax = viz.plot_curves({"steps": [1, 2, 3], "g": [3, 2, 1], "d": [1, 1, 1]}, smooth=2)
    assert len(ax.lines) == 2
    viz.plot_samples_2d(torch.randn(50, 2), color=torch.arange(50) % 3, lim=3)
    viz.plot_density_2d(data.ring_of_gaussians(std=0.2).log_prob, resolution=20)
    fig = viz.interpolation_strip([torch.rand(5, 1, 8, 8)] * 2, labels=["lerp", "slerp"])
    assert len(fig.axes) == 2
    plt.close("all")


def test_plot_validation():
    with pytest.raises(ValueError, match="images: expected shape"):
        viz.image_grid(torch.rand(2, 5, 8, 8))
    with pytest.raises(ValueError, match="keys"):
        viz.plot_curves({"a": [1]}, keys=["b"])
    with pytest.raises(ValueError, match="points"):
        viz.plot_samples_2d(torch.zeros(3, 3))


def test_explorer_renders_static_figures_outside_notebooks():
    drawn = []

    def render(z):
        drawn.append(z)
        plt.figure()

    assert viz.explorer(render, static=[{"z": 0.0}, {"z": 1.0}], z=(-1.0, 1.0)) is None
    assert drawn == [0.0, 1.0]
    plt.close("all")


def test_gate_prints_and_parses(capsys):
    assert gates.gate("acc", 0.97, ">=", 0.95, "test accuracy") == 0.97
    line = capsys.readouterr().out.strip()
    assert line == "GATE acc: 0.97 >= 0.95 (test accuracy) PASS"
    m = gates.GATE_LINE.match(line)
    assert m["name"] == "acc" and m["status"] == "PASS" and m["note"] == "test accuracy"


def test_gate_fails_loudly(capsys):
    with pytest.raises(gates.GateFailed, match="FAIL"):
        gates.gate("fid_ratio", 3.2, "<=", 2.0)
    with pytest.raises(gates.GateFailed):
        gates.gate("nan_value", float("nan"), "<=", 2.0)
    with pytest.raises(ValueError, match="op"):
        gates.gate("x", 1, "=>", 2)
    with pytest.raises(ValueError, match="name"):
        gates.gate("has space", 1, "<=", 2)

"""Compass projection, paper Eq. 4 (polar coordinates) and Eq. 5 (Gaussian-weighted binning)."""

import math

import numpy as np
import pytest
import torch

from creg.core.compass import (
    Flag,
    polar_coordinates,
    project_to_compass,
    sector_centers,
    sector_of,
    uniform_cell_xy,
)
from creg.core.sample import Box


def box_at(x, y, half=2.0):
    return Box(x0=x - half, y0=y - half, x1=x + half, y1=y + half)


# The 8 compass directions: (name, unit step in grid cells (du, dv), expected sector for K=8).
# Grid rows grow downwards, so "up" (90 deg) is du = -1.
DIRECTIONS = [
    ("E", (0, 1), 0), ("NE", (-1, 1), 1), ("N", (-1, 0), 2), ("NW", (-1, -1), 3),
    ("W", (0, -1), 4), ("SW", (1, -1), 5), ("S", (1, 0), 6), ("SE", (1, 1), 7),
]


def test_eq4_polar_convention_zero_is_right_ninety_is_up():
    """Eq. 4: theta = atan2(-(y - y_A), x - x_A): 0 deg right, 90 deg up (y grows downwards)."""
    xy = torch.tensor([[10.0, 0.0], [0.0, -10.0], [-10.0, 0.0], [0.0, 10.0], [3.0, -4.0]], dtype=torch.float64)
    theta, rho = polar_coordinates(xy, (0.0, 0.0))
    assert theta.tolist() == pytest.approx([0.0, 90.0, 180.0, 270.0, math.degrees(math.atan2(4, 3))])
    assert rho.tolist() == pytest.approx([10, 10, 10, 10, 5])


def test_sector_k_is_centred_at_k_times_360_over_k():
    """Eq. 5 sectors: sector k covers [k*45 - 22.5, k*45 + 22.5) for K = 8."""
    assert sector_centers(8).tolist() == [0, 45, 90, 135, 180, 225, 270, 315]
    theta = torch.tensor([0.0, 22.4, 22.5, 44.0, 337.5, 359.9, 180.0])
    assert sector_of(theta, 8).tolist() == [0, 0, 1, 1, 0, 0, 4]
    assert sector_of(torch.tensor([44.9, 45.0, 134.9, 135.0, 314.9, 315.0]), 4).tolist() == [0, 1, 1, 2, 3, 0]


@pytest.mark.parametrize("name,step,sector", DIRECTIONS)
def test_single_hot_cell_in_each_of_8_directions(name, step, sector):
    """Eq. 5: a single hot cell puts all mass in its sector; the peak points at the cell."""
    g = 9
    rel = torch.zeros(g, g)
    c = g // 2
    rel[c + 2 * step[0], c + 2 * step[1]] = 1.0
    size = (90, 90)  # 10 px cells; A at the centre cell
    ref = box_at(45, 45)
    tgt = box_at(45 + 20 * step[1], 45 + 20 * step[0])
    comp = project_to_compass(rel, ref, tgt, size, k=8)
    assert comp.peak_sector == sector
    assert comp.probs[sector] == pytest.approx(1.0)
    assert float(comp.probs.sum()) == pytest.approx(1.0)
    assert comp.peak_angle == pytest.approx(sector * 45.0)
    assert comp.flags == []


@pytest.mark.parametrize("name,step,sector", DIRECTIONS)
def test_k4_merges_diagonals_into_quadrants(name, step, sector):
    """K = 4: sectors centred at 0/90/180/270 with 90 deg width; exact diagonals sit on a boundary
    and fall in the sector that starts there (half-open intervals)."""
    g = 9
    rel = torch.zeros(g, g)
    rel[g // 2 + 2 * step[0], g // 2 + 2 * step[1]] = 1.0
    comp = project_to_compass(rel, box_at(45, 45), box_at(65, 45), (90, 90), k=4)
    expected = {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 0}[sector]
    assert comp.probs.shape == (4,)
    assert comp.peak_sector == expected


def test_non_square_grid_and_image_that_the_grid_does_not_divide():
    """Cell centres map linearly: cell (u, v) -> ((v + .5) W / w, (u + .5) H / h) for any W, H, w, h."""
    xy = uniform_cell_xy((3, 7), (100, 45))  # 100/7 and 45/3 are not grid multiples of each other
    assert xy.shape == (3, 7, 2)
    assert xy[0, 0].tolist() == pytest.approx([100 / 14, 7.5])
    assert xy[2, 6].tolist() == pytest.approx([100 - 100 / 14, 37.5])
    # a hot cell at the far right of the middle row, A at the far left: the evidence points right
    rel = torch.zeros(3, 7)
    rel[1, 6] = 5.0
    comp = project_to_compass(rel, box_at(7, 22.5), box_at(90, 22.5), (100, 45))
    assert comp.peak_sector == 0 and comp.peak_angle == pytest.approx(0.0)


def test_eq5_gaussian_weighting_with_the_appendix_reading_of_sigma():
    """Eq. 5 with sigma = sigma_r * r_max and r_max = rho_r * d_AB (Appendix A.3 reading):
    two cells of equal relevance at distances rho1, rho2 get masses in ratio exp(-(rho1^2 - rho2^2)/2sigma^2)."""
    size = (100, 10)
    ref = box_at(5, 5)
    tgt = box_at(25, 5)  # d_AB = 20 -> r_max = 40, sigma = 24
    xy = torch.tensor([[[25.0, 5.0], [5.0, -25.0]]], dtype=torch.float64)  # right at rho 20, up at rho 30
    comp = project_to_compass(torch.ones(1, 2), ref, tgt, size, cell_xy=xy)
    assert comp.r_max == pytest.approx(40.0) and comp.sigma == pytest.approx(24.0)
    ratio = math.exp(-(20.0**2) / (2 * 24.0**2)) / math.exp(-(30.0**2) / (2 * 24.0**2))
    assert float(comp.probs[0] / comp.probs[2]) == pytest.approx(ratio)


def test_cells_beyond_r_max_get_no_weight():
    """'r_max defines the maximum radius of influence': a cell at rho > r_max contributes nothing."""
    ref, tgt = box_at(0, 0), box_at(10, 0)  # r_max = 20
    xy = torch.tensor([[[15.0, 0.0], [-25.0, 0.0]]], dtype=torch.float64)
    comp = project_to_compass(torch.tensor([[1.0, 100.0]]), ref, tgt, (50, 50), cell_xy=xy)
    assert comp.probs[0] == pytest.approx(1.0) and comp.probs[4] == 0.0


def test_peak_angle_is_the_weighted_direction_inside_the_peak_sector():
    """A point at 30 deg falls in sector 1 (centre 45): peak_angle is 30, sector_angle 45."""
    ref, tgt = box_at(50, 50), box_at(80, 50)
    ang = math.radians(30)
    xy = torch.tensor([[[50 + 20 * math.cos(ang), 50 - 20 * math.sin(ang)]]], dtype=torch.float64)
    comp = project_to_compass(torch.ones(1, 1), ref, tgt, (100, 100), cell_xy=xy)
    assert comp.peak_sector == 1
    assert comp.sector_angle == 45.0
    assert comp.peak_angle == pytest.approx(30.0)


def test_degenerate_zero_distance_gives_uniform_and_a_flag():
    comp = project_to_compass(torch.rand(4, 4), box_at(10, 10), box_at(10, 10), (40, 40))
    assert Flag.ZERO_DISTANCE.value in comp.flags
    assert comp.probs.tolist() == pytest.approx([1 / 8] * 8)
    assert 0 <= comp.peak_sector < 8 and math.isfinite(comp.peak_angle)


def test_degenerate_all_zero_relevance_gives_uniform_and_a_flag():
    comp = project_to_compass(torch.zeros(4, 4), box_at(10, 10), box_at(30, 10), (40, 40))
    assert comp.flags == [Flag.NO_MASS.value]
    assert comp.probs.tolist() == pytest.approx([1 / 8] * 8)


def test_degenerate_nan_and_inf_are_zeroed_and_flagged_never_a_silent_nan():
    rel = torch.zeros(5, 5)
    rel[2, 4] = 1.0
    rel[0, 0] = float("nan")
    rel[4, 4] = float("inf")
    comp = project_to_compass(rel, box_at(25, 25), box_at(45, 25), (50, 50))
    assert Flag.NONFINITE.value in comp.flags
    assert torch.isfinite(comp.probs).all() and float(comp.probs.sum()) == pytest.approx(1.0)
    assert comp.peak_sector == 0


def test_all_nan_relevance_is_flagged_twice_and_uniform():
    comp = project_to_compass(torch.full((3, 3), float("nan")), box_at(5, 5), box_at(25, 5), (30, 30))
    assert comp.flags[:2] == [Flag.NONFINITE.value, Flag.NO_MASS.value]
    assert torch.isfinite(comp.probs).all()


def test_negative_relevance_is_clipped_and_flagged():
    rel = torch.tensor([[-5.0, 0.0, 1.0]])
    comp = project_to_compass(rel, box_at(15, 5), box_at(25, 5), (30, 10))
    assert Flag.NEGATIVE.value in comp.flags
    assert comp.peak_sector == 0


def test_tied_sectors_are_broken_by_the_seeded_generator():
    rel = torch.zeros(3, 3)
    rel[1, 0] = rel[1, 2] = 1.0  # left and right, same distance
    a = project_to_compass(rel, box_at(15, 15), box_at(25, 15), (30, 30), rng=np.random.default_rng(1))
    b = project_to_compass(rel, box_at(15, 15), box_at(25, 15), (30, 30), rng=np.random.default_rng(1))
    assert Flag.TIED_PEAK.value in a.flags
    assert a.peak_sector == b.peak_sector and a.peak_sector in (0, 4)


def test_numpy_input_and_shape_errors():
    comp = project_to_compass(np.ones((2, 2)), box_at(5, 5), box_at(15, 5), (20, 20))
    assert float(comp.probs.sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2-D"):
        project_to_compass(torch.ones(4), box_at(5, 5), box_at(15, 5), (20, 20))
    with pytest.raises(ValueError, match="cell_xy"):
        project_to_compass(torch.ones(2, 2), box_at(5, 5), box_at(15, 5), (20, 20), cell_xy=torch.zeros(3, 3, 2))

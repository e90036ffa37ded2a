"""Reference-centred polar binning of a relevance grid into a K-sector compass (paper §3.4).

Eq. 4: every grid cell (u, v) has a pixel centre (x_uv, y_uv) in the original image and, seen
from the centre (x_A, y_A) of the reference box,

    theta_uv = atan2(-(y_uv - y_A), x_uv - x_A)    (0 deg = right, 90 deg = up)
    rho_uv   = sqrt((x_uv - x_A)^2 + (y_uv - y_A)^2)

Eq. 5: sector k (centred at k * 360 / K, half-open [c - w/2, c + w/2)) collects
r_uv * exp(-rho_uv^2 / (2 sigma^2)); P is the normalised vector of sector masses.

The reading of Eq. 5 used here (its printed form has a typo, see docs/paper-to-code.md):
    r_max = rho_r * d_AB,   sigma = sigma_r * r_max   (Appendix A.3: sigma = 0.6 * r_max,
    r_max = 2.0 * d_AB), and cells with rho_uv > r_max get no weight ("maximum radius of
    influence").

The direction the evidence points at, ``peak_angle``, is the weighted circular mean of the cell
angles *inside the peak sector*; ``sector_angle`` is the centre of the peak sector (the paper's
literal theta_peak). Both feed DAE (Eq. 6); docs/paper-to-code.md says why.

Degenerate inputs never crash and never give a silent NaN: they give a defined result and a
flag (:class:`Flag`) that the run records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch

from creg.core.sample import Box


class Flag(str, Enum):
    """Why a compass is not an ordinary one."""

    #: A and B have the same centre: no direction, no sigma; P is uniform, DAE undefined.
    ZERO_DISTANCE = "zero_distance"
    #: NaN or inf relevance values were set to 0.
    NONFINITE = "nonfinite_relevance"
    #: negative relevance values were set to 0 (relevance is a magnitude).
    NEGATIVE = "negative_relevance"
    #: no relevance mass within r_max (all zero, or all far away): P is uniform.
    NO_MASS = "no_mass"
    #: several sectors share the maximum; one was drawn at random (seeded).
    TIED_PEAK = "tied_peak"
    #: every relevance value was NaN or inf: the source gave no signal; P is uniform, DAE undefined
    #: (not the DAE of a randomly drawn peak).
    NO_SIGNAL = "no_signal"


@dataclass
class Compass:
    """A compass distribution and its peak.

    ``probs``: ``(k,)`` float64, sums to 1. Angles in degrees, 0 = right, 90 = up.
    """

    probs: torch.Tensor
    peak_sector: int
    peak_angle: float
    sector_angle: float
    d_ab: float
    r_max: float
    sigma: float
    flags: list[str] = field(default_factory=list)

    @property
    def k(self) -> int:
        return int(self.probs.shape[0])


def sector_centers(k: int) -> torch.Tensor:
    """``(k,)`` centre angles (deg) of the K sectors: k * 360 / K."""
    return torch.arange(k, dtype=torch.float64) * (360.0 / k)


def sector_of(theta: torch.Tensor, k: int) -> torch.Tensor:
    """Sector index of each angle (deg); sector k covers [c_k - 180/K, c_k + 180/K)."""
    width = 360.0 / k
    return (torch.floor(torch.remainder(theta + width / 2.0, 360.0) / width).long()) % k


def uniform_cell_xy(grid_hw: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """``(h, w, 2)`` pixel centres of an (h, w) grid spread linearly over a (width, height) image.

    Cell (u, v) is centred at ((v + 0.5) * W / w, (u + 0.5) * H / h): the grid need not divide the
    image, and the image need not be square.
    """
    gh, gw = grid_hw
    width, height = image_size
    xs = (torch.arange(gw, dtype=torch.float64) + 0.5) * (width / gw)
    ys = (torch.arange(gh, dtype=torch.float64) + 0.5) * (height / gh)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def polar_coordinates(cell_xy: torch.Tensor, center: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4: (theta in [0, 360) deg, rho in px) of each cell seen from ``center``.

    ``cell_xy``: ``(..., 2)`` pixel (x, y); returns two ``(...)`` tensors.
    """
    dx = cell_xy[..., 0] - center[0]
    dy = cell_xy[..., 1] - center[1]
    theta = torch.remainder(torch.rad2deg(torch.atan2(-dy, dx)), 360.0)
    rho = torch.sqrt(dx * dx + dy * dy)
    return theta, rho


def _clean(relevance: torch.Tensor, flags: list[str]) -> torch.Tensor:
    r = relevance.detach().to(torch.float64)
    finite = torch.isfinite(r)
    if not bool(finite.all()):
        flags.append(Flag.NONFINITE.value)
        r = torch.where(finite, r, torch.zeros_like(r))
    if bool((r < 0).any()):
        flags.append(Flag.NEGATIVE.value)
        r = r.clamp_min(0.0)
    return r


def project_to_compass(
    relevance,
    ref_box: Box,
    tgt_box: Box,
    image_size: tuple[int, int],
    k: int = 8,
    sigma_r: float = 0.6,
    rho_r: float = 2.0,
    *,
    cell_xy: torch.Tensor | None = None,
    rng: np.random.Generator | None = None,
) -> Compass:
    """Project a relevance grid onto K compass sectors around the reference box (Eq. 4-5).

    ``relevance``: ``(h, w)`` (tensor or array), any grid shape. ``image_size``: (width, height).
    ``cell_xy``: ``(h, w, 2)`` pixel centres of the cells in the original image; by default the
    grid is spread linearly over the image (:func:`uniform_cell_xy`). ``tgt_box`` only sets the
    scale d_AB. ``rng`` breaks ties between equal sectors (default: a fixed generator).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    flags: list[str] = []
    relevance = torch.as_tensor(relevance)
    r = _clean(relevance, flags)
    no_signal = relevance.numel() > 0 and not bool(torch.isfinite(relevance).any())
    if r.ndim != 2:
        raise ValueError(f"relevance must be a 2-D (h, w) grid, got shape {tuple(r.shape)}")
    xy = uniform_cell_xy(tuple(r.shape), image_size) if cell_xy is None else torch.as_tensor(cell_xy).to(torch.float64)
    if xy.shape != (*r.shape, 2):
        raise ValueError(f"cell_xy must have shape {(*r.shape, 2)}, got {tuple(xy.shape)}")

    (xa, ya), (xb, yb) = ref_box.center, tgt_box.center
    d_ab = math.hypot(xb - xa, yb - ya)
    centers = sector_centers(k)
    rng = rng if rng is not None else np.random.default_rng(0)

    if not d_ab > 1e-9:
        flags.append(Flag.ZERO_DISTANCE.value)
        peak = int(rng.integers(k))
        c = float(centers[peak])
        return Compass(torch.full((k,), 1.0 / k, dtype=torch.float64), peak, c, c, d_ab, 0.0, 0.0, flags)

    r_max = rho_r * d_ab
    sigma = sigma_r * r_max
    theta, rho = polar_coordinates(xy, (xa, ya))
    weight = r * torch.exp(-(rho * rho) / (2.0 * sigma * sigma)) * (rho <= r_max)
    sector = sector_of(theta, k)
    mass = torch.zeros(k, dtype=torch.float64).index_add_(0, sector.reshape(-1), weight.reshape(-1))
    total = float(mass.sum())

    if not total > 0.0:
        flags.append(Flag.NO_MASS.value)
        probs = torch.full((k,), 1.0 / k, dtype=torch.float64)
    else:
        probs = mass / total

    top = torch.nonzero(torch.isclose(probs, probs.max(), rtol=1e-12, atol=0.0)).flatten()
    if top.numel() > 1:
        if Flag.NO_MASS.value not in flags:
            flags.append(Flag.TIED_PEAK.value)
        peak = int(top[int(rng.integers(top.numel()))])
    else:
        peak = int(top[0])

    sector_angle = float(centers[peak])
    in_peak = (sector == peak) & (weight > 0)
    if bool(in_peak.any()):
        w = weight[in_peak]
        t = torch.deg2rad(theta[in_peak])
        peak_angle = math.degrees(math.atan2(float((w * torch.sin(t)).sum()), float((w * torch.cos(t)).sum()))) % 360.0
    else:
        peak_angle = sector_angle
    if no_signal:
        flags.append(Flag.NO_SIGNAL.value)
    return Compass(probs, peak, peak_angle, sector_angle, d_ab, r_max, sigma, flags)


def sector_names(k: int) -> list[str]:
    """Names of the K sectors: compass points for K = 4, 8 and 16, centre angles otherwise."""
    if k == 16:
        return ["E", "ENE", "NE", "NNE", "N", "NNW", "NW", "WNW", "W", "WSW", "SW", "SSW", "S", "SSE", "SE", "ESE"]
    if k == 8:
        return ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]
    if k == 4:
        return ["E", "N", "W", "S"]
    return [f"{i * 360 / k:.0f}°" for i in range(k)]

"""Multi-grid layouts (tiles + thumbnail) through the contract, the sources and the compass."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.adapter import AdapterConfig
from creg.testing import AdapterContract
from contract_adapters import TiledExampleAdapter


class TestTiledAdapterContract(AdapterContract):
    supports_attentions = False

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls):
        return TiledExampleAdapter.load(AdapterConfig(model="random:0"))


# -- sources and the compass on a multi-grid layout --------------------------------------------
from creg.plugins.adapter import VisionGrid, VisionLayout, split_cells  # noqa: E402
from creg.core.compass import polar_coordinates, project_to_compass, sector_of, uniform_cell_xy  # noqa: E402
from creg.explain.context import ExplainContext  # noqa: E402
from creg.hf import cells_in_image, centre_crop_region, pad_to_square_region, region_cell_xy  # noqa: E402
from creg.plugins.manager import get_plugins  # noqa: E402
from creg.core.sample import Box  # noqa: E402
from creg.sources.token_grid import relevance_map  # noqa: E402
from creg_synthetic.scenes import scene_sample  # noqa: E402
from contract_adapters import TILE_CELLS  # noqa: E402


@pytest.fixture(scope="module")
def tiled():
    return TiledExampleAdapter.load(AdapterConfig(model="random:0"))


def test_every_model_source_covers_every_cell_of_every_grid(tiled):
    samples = [scene_sample(0, i, (224, 160)) for i in range(2)]
    plugins = get_plugins()
    sources = [plugins.load("source", name)(**opts) for name, opts in (
        ("creg", {"layers": "-2,-3"}), ("gradnorm", {}), ("gradxact", {}), ("gradcam", {}),
        ("integrated_gradients", {}), ("random_relevance", {}))]
    ctx = ExplainContext.for_sources(samples, tiled, sources)
    n_cells = 3 * TILE_CELLS**2
    for src in sources:
        maps = src.explain(ctx)
        # GradCAM's ReLU may legitimately zero a whole map of a random model: mass on some sample suffices
        assert any(m.values.sum() > 0 for m in maps), src.name
        for i, m in enumerate(maps):
            lay = ctx.layout(i)
            assert lay.is_multi_grid and lay.grid_hw == (1, n_cells)
            assert torch.isfinite(m.values).all() and (m.values >= 0).all(), src.name
            if src.name == "gradcam":  # stays on the stacked tile patches, at their own centres
                assert tuple(m.values.shape) == lay.patch_hw and torch.equal(m.cell_xy, lay.patch_xy)
            else:
                assert tuple(m.values.shape) == (1, n_cells) and torch.equal(m.cell_xy, lay.cell_xy), src.name


def test_the_compass_adds_overlapping_grids_cell_by_cell():
    """Eq. 5 over the union: a region covered by a tile and the thumbnail counts both tokens."""
    size = (200, 100)
    tile = VisionGrid(token_index=torch.arange(8), grid_hw=(2, 4), cell_xy=region_cell_xy((2, 4), (100, 0, 200, 100)))
    thumb = VisionGrid(token_index=torch.arange(8, 12), grid_hw=(2, 2), cell_xy=region_cell_xy((2, 2), (0, 0, 200, 100)))
    lay = VisionLayout.from_grids([tile, thumb])
    g = torch.Generator().manual_seed(0)
    values = torch.rand(1, 12, generator=g, dtype=torch.float64)
    ref, tgt = Box(x0=20, y0=40, x1=40, y1=60), Box(x0=150, y0=40, x1=170, y1=60)
    got = project_to_compass(values, ref, tgt, size, cell_xy=lay.cell_xy)
    # by hand: each cell's Eq. 5 weight into its sector, grid by grid, then normalised
    mass = torch.zeros(8, dtype=torch.float64)
    for grid, v in ((tile, values[0, :8]), (thumb, values[0, 8:])):
        theta, rho = polar_coordinates(grid.cell_xy.reshape(-1, 2), ref.center)
        r_max = 2.0 * 130.0
        w = v * torch.exp(-(rho**2) / (2 * (0.6 * r_max) ** 2)) * (rho <= r_max)
        mass.index_add_(0, sector_of(theta, 8), w)
    torch.testing.assert_close(got.probs, mass / mass.sum())


def test_cells_on_padding_carry_no_relevance():
    size = (200, 100)  # padded to a 200 x 200 square, centred: rows above and below are padding
    region = pad_to_square_region(size)
    assert region == (0.0, -50.0, 200.0, 150.0)
    xy = region_cell_xy((4, 4), region)
    inside = cells_in_image(xy, size)
    assert inside.tolist() == [[False] * 4, [True] * 4, [True] * 4, [False] * 4]
    lay = VisionLayout(token_index=torch.arange(16), grid_hw=(4, 4), cell_xy=xy, cell_in_image=inside)
    m = relevance_map(torch.ones(4, 4), lay)
    assert m.values[0].sum() == 0 and m.values[3].sum() == 0 and m.values[1:3].sum() == 8


def test_patch_centres_follow_the_cells_not_the_whole_image():
    """A centre-cropped wide image: the patches lie under the crop, not spread over the image."""
    size = (300, 100)
    region = centre_crop_region(size, (300, 100), (100, 100))
    assert region == (100.0, 0.0, 200.0, 100.0)
    lay = VisionLayout(token_index=torch.arange(4), grid_hw=(2, 2), cell_xy=region_cell_xy((2, 2), region), patch_hw=(4, 4))
    torch.testing.assert_close(lay.patch_centres(), region_cell_xy((4, 4), region))
    assert not torch.allclose(lay.patch_centres(), uniform_cell_xy((4, 4), size))
    assert split_cells(lay.cell_xy, (5, 4)) is None  # not a whole number of patches per cell
    odd = VisionLayout(token_index=torch.arange(4), grid_hw=(2, 2), cell_xy=lay.cell_xy, patch_hw=(5, 4))
    torch.testing.assert_close(odd.patch_centres(), region_cell_xy((5, 4), region))  # spread over the crop


# -- a centre-cropping model passes, vision activations included -----------------------------
from contract_adapters import CentreCropQwen2VLAdapter  # noqa: E402


class TestCentreCropContract(AdapterContract):
    """LLaVA-1.5-style preprocessing (shortest side to 224, centre crop): its ``cell_xy`` is the
    crop, and the vision-activation check places patches by the geometry that ``cell_xy``
    implies (not over the whole image), so the whole contract passes."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, tiny_qwen2vl_deep_dir):
        return CentreCropQwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir)))

"""The contract fails the LLaVA / LLaVA-NeXT / InternVL adapters when their geometry has a classic mistake.

Each broken adapter is the real one on its tiny checkpoint with one error in the layout; the
contract runs against it in a nested pytest session (tests/test_contract_catches_broken_adapter.py)
and its marker tests -- one per grid -- must fail.
"""

from __future__ import annotations

import dataclasses

import torch

from creg.plugins.adapter import AdapterConfig
from creg_internvl.adapter import InternVLAdapter
from creg_llava.adapter import LlavaAdapter
from creg_llava.geometry import Grid
from test_contract_catches_broken_adapter import run_contract


def _markers(outcomes: dict[str, str], sizes: str) -> dict[str, str]:
    """The marker tests on the contract's images ``sizes`` ("0" square, "1" wide, "2" tall)."""
    return {n: o for n, o in outcomes.items()
            if n.startswith("test_marker_lands_in_its_cell") and any(f"[{i}-" in n for i in sizes)}


class CropIgnoredLlava(LlavaAdapter):
    """LLaVA-1.5 whose cells are spread over the whole image, as if the processor did not crop."""

    def image_tokens(self, image_wh):
        from creg.core.compass import uniform_cell_xy

        tokens = super().image_tokens(image_wh)
        g = tokens.grids[0]
        return dataclasses.replace(tokens, grids=[Grid(g.name, g.offsets, uniform_cell_xy(g.grid_hw, image_wh).double())])


class NewlinesIgnoredLlavaNext(LlavaAdapter):
    """LLaVA-NeXT read as if the any-resolution rows had no newline token between them."""

    def image_tokens(self, image_wh):
        tokens = super().image_tokens(image_wh)
        base, anyres = tokens.grids
        start = int(anyres.offsets[0])
        contiguous = torch.arange(start, start + anyres.offsets.numel())
        return dataclasses.replace(tokens, grids=[base, Grid(anyres.name, contiguous, anyres.cell_xy)])


class ThumbnailFirstInternVL(InternVLAdapter):
    """InternVL read as if the thumbnail came before the tiles."""

    def tiles(self, image_wh):
        tiles = super().tiles(image_wh)
        if len(tiles) == 1:
            return tiles
        per, n = tiles[0].offsets.numel(), len(tiles)
        shifted = [dataclasses.replace(t, offsets=t.offsets + per) for t in tiles[:-1]]
        return [*shifted, dataclasses.replace(tiles[-1], offsets=tiles[-1].offsets - per * (n - 1))]


def _load(cls, build, tmp_path_factory, **kw):
    return cls.load(AdapterConfig(model=str(build(tmp_path_factory.mktemp(cls.__name__), seed=0, **kw))))


def test_llava_cells_ignoring_the_crop_fail_the_marker_tests_on_non_square_images(tmp_path_factory, tmp_path):
    from creg_llava.tiny import build_tiny_llava

    outcomes = run_contract(_load(CropIgnoredLlava, build_tiny_llava, tmp_path_factory), tmp_path, "marker")
    non_square, square = _markers(outcomes, "12"), _markers(outcomes, "0")
    assert len(non_square) == 4 and set(non_square.values()) == {"failed"}, outcomes
    assert square and set(square.values()) == {"passed"}, outcomes


def test_llava_next_rows_without_newlines_fail_the_marker_tests(tmp_path_factory, tmp_path):
    from creg_llava.tiny import build_tiny_llava

    outcomes = run_contract(_load(NewlinesIgnoredLlavaNext, build_tiny_llava, tmp_path_factory, next=True),
                            tmp_path, "marker")
    markers = _markers(outcomes, "012")
    assert len(markers) == 6 and "failed" in markers.values(), outcomes
    assert set(_markers(outcomes, "12").values()) == {"failed"}, outcomes


def test_internvl_thumbnail_read_first_fails_the_marker_tests_on_tiled_images(tmp_path_factory, tmp_path):
    from creg_internvl.tiny import build_tiny_internvl

    outcomes = run_contract(_load(ThumbnailFirstInternVL, build_tiny_internvl, tmp_path_factory), tmp_path, "marker")
    tiled, single = _markers(outcomes, "12"), _markers(outcomes, "0")
    assert len(tiled) == 4 and set(tiled.values()) == {"failed"}, outcomes
    assert single and set(single.values()) == {"passed"}, outcomes  # one tile, no thumbnail: nothing to swap

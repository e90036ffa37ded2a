"""GradCAM baseline (Selvaraju et al. 2017; paper §5.1, Appendix A.3) on the vision encoder.

A = the vision encoder's last-layer activations ``(H_p, W_p, c)`` (before the merger), G = d z_gt / d A.
Channel weights alpha_c = mean over (H_p, W_p) of G[..., c]; map = ReLU(sum_c alpha_c A[..., c]).

Geometry: when the sample has a single token grid whose patch grid is a whole multiple of it
and the adapter gives no patch centres, the map is bilinearly resized from the patch grid
(H_p, W_p) to the token grid (H_g, W_g) (``align_corners=False``; for Qwen2-VL's 2x2 merge this is
the mean of each 2x2 block) and placed on the cells' centres -- the paper's recipe. Otherwise
(tiles stacked along H_p, a patch grid that does not divide into the token grid, explicit
``patch_xy``) the map stays on the patches, each at its own pixel centre
(:meth:`creg.plugins.adapter.VisionLayout.patch_centres`), so a crop, padding or tiling is honoured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from creg.core.compass import uniform_cell_xy
from creg.explain.context import VISION, ExplainContext
from creg.plugins.adapter import VisionLayout
from creg.plugins.relevance import (
    GradientRequest,
    RelevanceMap,
    RelevanceSource,
    SourceRequest,
)
from creg.sources.token_grid import relevance_map


def gradcam_map(activations: torch.Tensor, gradients: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """``(H_p, W_p, c), (H_p, W_p, c) -> (H_g, W_g)`` GradCAM map, >= 0."""
    alpha = gradients.float().mean(dim=(0, 1))  # c
    cam = torch.relu(torch.einsum("hwc,c->hw", activations.detach().float(), alpha))
    if tuple(cam.shape) == tuple(grid_hw):
        return cam
    resized = F.interpolate(cam[None, None], size=tuple(grid_hw), mode="bilinear", align_corners=False)[0, 0]
    return resized.clamp_min(0)


def on_token_grid(layout: VisionLayout, patch_hw: tuple[int, int]) -> bool:
    """Resize to the token grid (the paper's recipe) rather than keep the patch map?"""
    gh, gw = layout.grid_hw
    return layout.patch_xy is None and not layout.is_multi_grid and patch_hw[0] % gh == 0 and patch_hw[1] % gw == 0


def gradcam_relevance(activations: torch.Tensor, gradients: torch.Tensor, layout: VisionLayout,
                      image_size: tuple[int, int]) -> RelevanceMap:
    """One sample's GradCAM :class:`RelevanceMap` with the geometry described in the module docstring."""
    patch_hw = tuple(activations.shape[:2])
    if on_token_grid(layout, patch_hw):
        return relevance_map(gradcam_map(activations, gradients, layout.grid_hw), layout)
    cam = gradcam_map(activations, gradients, patch_hw)
    xy = layout.patch_centres()
    if xy is None or tuple(xy.shape[:2]) != patch_hw:
        xy = uniform_cell_xy(patch_hw, image_size)  # nothing better known: the patches span the image
    return RelevanceMap(values=cam.detach().float().cpu(), cell_xy=xy)


class GradCamSource(RelevanceSource):
    """GradCAM on the last vision-encoder layer, target z_gt. No options."""

    name = "gradcam"

    def request(self) -> SourceRequest:
        return SourceRequest(vision_activations=True, gradients=(GradientRequest(target="gt", vision=True),))

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        grads = ctx.gradients("gt", [], vision=True)[VISION]
        acts = ctx.output.vision_activations
        maps = []
        for i, s in enumerate(ctx.samples):
            maps.append(gradcam_relevance(acts[i], grads[i], ctx.layout(i), s.image_size))
        return maps

"""GradCAM baseline (Selvaraju et al. 2017; paper §5.1, Appendix A.3) on the vision encoder.

A = the vision encoder's last-layer activations ``(H_p, W_p, c)`` (before the merger), G = d z_gt / d A.
Channel weights alpha_c = mean over (H_p, W_p) of G[..., c]; map = ReLU(sum_c alpha_c A[..., c]),
bilinearly resized from the patch grid (H_p, W_p) to the token grid (H_g, W_g)
(``align_corners=False``; for Qwen2-VL's 2x2 merge this is the mean of each 2x2 block).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..context import VISION, ExplainContext
from ..relevance import GradientRequest, RelevanceMap, RelevanceSource, SourceRequest
from .token_grid import relevance_map


def gradcam_map(activations: torch.Tensor, gradients: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """``(H_p, W_p, c), (H_p, W_p, c) -> (H_g, W_g)`` GradCAM map, >= 0."""
    alpha = gradients.float().mean(dim=(0, 1))  # c
    cam = torch.relu(torch.einsum("hwc,c->hw", activations.detach().float(), alpha))
    if tuple(cam.shape) == tuple(grid_hw):
        return cam
    resized = F.interpolate(cam[None, None], size=tuple(grid_hw), mode="bilinear", align_corners=False)[0, 0]
    return resized.clamp_min(0)


class GradCamSource(RelevanceSource):
    """GradCAM on the last vision-encoder layer, target z_gt. No options."""

    name = "gradcam"
    description = "GradCAM on the last vision-encoder layer, target z_gt, upsampled to the token grid (paper §5.1)"

    def request(self) -> SourceRequest:
        return SourceRequest(vision_activations=True, gradients=(GradientRequest(target="gt", vision=True),))

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        grads = ctx.gradients("gt", [], vision=True)[VISION]
        acts = ctx.output.vision_activations
        maps = []
        for i in range(len(ctx.samples)):
            layout = ctx.layout(i)
            maps.append(relevance_map(gradcam_map(acts[i], grads[i], layout.grid_hw), layout))
        return maps

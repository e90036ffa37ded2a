"""The RelevanceSource contract: one per-token relevance signal (CREG or a baseline).

Every source returns, for each sample of a batch, a :class:`RelevanceMap` -- non-negative
relevance on a grid of points of the original image. All sources then go through the same
compass projection (:func:`creg.compass.project_to_compass`): as in the paper, "the only
difference is the per-token relevance signal".

Sources never run the model themselves: they read the one shared forward pass (and its cached
gradients) from an :class:`creg.context.ExplainContext`, so several sources with the same
gradient target cost one forward and one backward.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from .adapter import ForwardRequest
from .sample import Box

if TYPE_CHECKING:  # pragma: no cover
    from .context import ExplainContext


class RelevanceMap(BaseModel):
    """Relevance for one sample.

    * ``values``: ``(h, w)`` float, finite and >= 0 (the projection flags and repairs anything else).
    * ``cell_xy``: ``(h, w, 2)`` pixel centres (x, y) of the cells in the original image, or None
      for a grid that tiles the whole image uniformly (cell (u, v) centred at
      ((v + 0.5) W / w, (u + 0.5) H / h)).
    * ``ref_box``: project around this box instead of the sample's reference box A
      (the randomised-reference control, ``random_ref``); the true direction A -> B used by the
      metrics is unchanged. None for every ordinary source.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    values: torch.Tensor
    cell_xy: torch.Tensor | None = None
    ref_box: Box | None = None


class RelevanceSource(ABC):
    """Base class of relevance sources. Options arrive as keyword arguments (``--source-opt``)."""

    #: the name used on the command line.
    name: ClassVar[str] = ""
    #: short description shown by ``creg list``.
    description: ClassVar[str] = ""
    #: False for geometry-only sources (oracle, random, target_box) that run without a model.
    needs_model: ClassVar[bool] = True

    def __init__(self, **options: Any):
        if options:
            raise TypeError(f"source {self.name!r} takes no options, got {sorted(options)}")

    def request(self) -> ForwardRequest:
        """What this source needs from the shared forward pass."""
        return ForwardRequest()

    @abstractmethod
    def explain(self, ctx: "ExplainContext") -> list[RelevanceMap]:
        """One :class:`RelevanceMap` per sample of ``ctx.samples``, in order."""

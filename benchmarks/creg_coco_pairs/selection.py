"""Seeded, balanced and stable choice of candidate pairs.

Each relation class gets a quota: ``n // 4`` each, and the first ``n % 4`` classes in the
order left, right, above, below get one more (so ``n`` need not be a multiple of 4). The
candidates of each class (already sorted deterministically) are shuffled by a generator seeded
with ``(seed, class index)``; that order does not depend on ``n``. Classes then take turns in
the order left, right, above, below, each taking its next candidate that is accepted:

* its unordered pair of annotations has not been used yet;
* its image has fewer than ``max_per_image`` chosen pairs (0 = no limit);
* ``accept(candidate)`` says yes (the benchmark builds the sample and checks the image there;
  a refusal is counted by the benchmark, and the class moves on to its next candidate).

A class whose candidates run out stops with a shortfall; the others keep their quotas. Because
turns are taken in a fixed order, the choice for ``n`` is a prefix of the choice for a larger
``n`` (when no class runs short), and each class's picks are balanced through any prefix of the
output order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

import numpy as np

from creg.core.sample import RELATIONS

from .pairs import Candidate

T = TypeVar("T")


def class_quotas(n: int) -> dict[str, int]:
    base, extra = divmod(n, len(RELATIONS))
    return {r: base + (1 if i < extra else 0) for i, r in enumerate(RELATIONS)}


def seeded_order(candidates: list[Candidate], seed: int, relation: str) -> list[Candidate]:
    rng = np.random.default_rng([int(seed), RELATIONS.index(relation)])
    return [candidates[i] for i in rng.permutation(len(candidates))]


@dataclass
class Selection(Generic[T]):
    """What was chosen, in output order, and how far each class fell short of its quota."""

    chosen: list[T] = field(default_factory=list)
    quotas: dict[str, int] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    per_class: Counter = field(default_factory=Counter)

    @property
    def shortfall(self) -> dict[str, int]:
        return {r: self.quotas[r] - self.per_class[r] for r in RELATIONS if self.per_class[r] < self.quotas[r]}


def select_balanced(
    grouped: dict[str, list[Candidate]],
    n: int,
    seed: int,
    max_per_image: int,
    accept: Callable[[Candidate], T | None],
) -> Selection[T]:
    """Choose up to ``n`` accepted candidates; ``accept`` turns a candidate into an item or refuses (None)."""
    quotas = class_quotas(n)
    queues = {r: iter(seeded_order(grouped.get(r, []), seed, r)) for r in RELATIONS}
    selection: Selection[T] = Selection(quotas=quotas, available={r: len(grouped.get(r, [])) for r in RELATIONS})
    used_pairs: set[frozenset[int]] = set()
    per_image: Counter = Counter()
    open_classes = [r for r in RELATIONS if quotas[r] > 0]
    while open_classes:
        for relation in list(open_classes):
            item = None
            for cand in queues[relation]:
                if cand.pair_key in used_pairs:
                    continue
                if max_per_image and per_image[cand.image_id] >= max_per_image:
                    continue
                item = accept(cand)
                if item is not None:
                    used_pairs.add(cand.pair_key)
                    per_image[cand.image_id] += 1
                    break
            if item is None:  # this class ran out of candidates
                open_classes.remove(relation)
                continue
            selection.chosen.append(item)
            selection.per_class[relation] += 1
            if selection.per_class[relation] >= quotas[relation]:
                open_classes.remove(relation)
    return selection

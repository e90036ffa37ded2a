"""Matching a VSR entity name to a COCO category name.

Rule (the paper's "exact or substring" match, made precise):

1. lower-case both and collapse white space; an exact match wins;
2. otherwise the categories whose name occurs in the entity name as whole words ("brown bear"
   -> "bear"; never "cat" inside "catcher"): the longest one ("hot dog stand" -> "hot dog",
   not "dog"); no match if two of that length remain;
3. otherwise the categories whose name contains the entity name as whole words ("teddy" ->
   "teddy bear"): only when exactly one does ("small" in "small cup" and "small bowl" is
   ambiguous: no match).

On the published VSR splits every entity name is already an exact COCO category name
(77 distinct names), so step 2 never fires there; it matters for hand-written rows.
"""

from __future__ import annotations

import re
from typing import Iterable


def normalise(name: str) -> str:
    return " ".join(name.lower().split())


def _contains_words(haystack: str, needle: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(needle)}(?![a-z0-9])", haystack) is not None


def match_category(entity: str, category_names: Iterable[str]) -> str | None:
    """The COCO category name that ``entity`` refers to, or None."""
    entity = normalise(entity)
    names = {normalise(c): c for c in category_names}
    if entity in names:
        return names[entity]
    mentioned = [n for n in names if _contains_words(entity, n)]
    if mentioned:
        longest = max(len(n) for n in mentioned)
        best = [n for n in mentioned if len(n) == longest]
        return names[best[0]] if len(best) == 1 else None
    containing = [n for n in names if _contains_words(n, entity)]
    return names[containing[0]] if len(containing) == 1 else None

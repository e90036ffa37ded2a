"""Where the tests find the shared data that is not in the repository.

``CREG_TEST_COCO``: the coco-tiny folder (COCO 2017 layout: annotations/ + val2017/); default
``../shared/data/coco-tiny`` next to the repository. Tests that need it skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

COCO_ENV = "CREG_TEST_COCO"
COCO_TINY = Path(os.environ.get(COCO_ENV) or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-tiny")

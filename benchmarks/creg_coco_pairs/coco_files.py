"""Where the COCO 2017 files live under a data folder, and loading them with clear errors.

Expected layout (the COCO 2017 release, unzipped into one folder)::

    DATA_DIR/annotations/instances_val2017.json    (from annotations_trainval2017.zip)
    DATA_DIR/annotations/instances_train2017.json
    DATA_DIR/val2017/*.jpg                          (from val2017.zip)
    DATA_DIR/train2017/*.jpg                        (from train2017.zip)

The folder comes from ``data_dir`` (the CLI's ``--data-dir`` / ``CREG_DATA_DIR``); when that is
not given, the environment variable ``CREG_COCO_DIR`` and then ``CREG_DATA_DIR`` are read.
A missing file raises :class:`creg.benchmark.DataNotFound` naming the file, the COCO download
that contains it and where to put it. Images are checked one by one (:func:`image_problem`) so a
corrupt image is counted and skipped, not fatal.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from creg.benchmark import DataNotFound

COCO_SPLITS: tuple[str, ...] = ("val2017", "train2017")
COCO_DOWNLOAD_PAGE = "https://cocodataset.org/#download"
_IMAGE_ZIPS = {"val2017": "2017 Val images (val2017.zip)", "train2017": "2017 Train images (train2017.zip)"}
_ANNOTATION_ZIP = "2017 Train/Val annotations (annotations_trainval2017.zip)"


def resolve_data_dir(data_dir: str | Path | None, benchmark: str) -> Path:
    """``data_dir``, else ``$CREG_COCO_DIR``, else ``$CREG_DATA_DIR``; DataNotFound if none is set or it is not a folder."""
    if data_dir is None:
        data_dir = os.environ.get("CREG_COCO_DIR") or os.environ.get("CREG_DATA_DIR")
    if not data_dir:
        raise DataNotFound(
            f"benchmark {benchmark!r} needs the COCO 2017 files: pass --data-dir DIR (or set CREG_DATA_DIR "
            f"or CREG_COCO_DIR) where DIR holds annotations/instances_val2017.json and val2017/ "
            f"from {COCO_DOWNLOAD_PAGE}"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataNotFound(f"benchmark {benchmark!r}: data folder not found: {root}")
    return root


def check_split(split: str) -> str:
    if split not in COCO_SPLITS:
        raise ValueError(f"COCO split must be one of {', '.join(COCO_SPLITS)}, got {split!r}")
    return split


def annotation_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{check_split(split)}.json"


def missing_annotation_message(root: Path, split: str) -> str:
    path = annotation_path(root, split)
    return (
        f"COCO annotation file not found: {path}. It is in {_ANNOTATION_ZIP} from {COCO_DOWNLOAD_PAGE}; "
        f"unzip it into {root} so that {path.relative_to(root)} exists."
    )


def load_instances(root: Path, split: str):
    """The split's instance annotations as a ``pycocotools.coco.COCO`` index (its progress prints are silenced)."""
    from pycocotools.coco import COCO

    path = annotation_path(root, split)
    if not path.is_file():
        raise DataNotFound(missing_annotation_message(root, split))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a COCO instances file: {type(e).__name__}: {e}") from e


def image_folder(root: Path, split: str) -> Path:
    """The split's image folder; DataNotFound if it is absent."""
    folder = root / check_split(split)
    if not folder.is_dir():
        raise DataNotFound(
            f"COCO image folder not found: {folder}. It is {_IMAGE_ZIPS[split]} from {COCO_DOWNLOAD_PAGE}; "
            f"unzip it into {root} so that {folder.name}/<image>.jpg exists."
        )
    return folder


def image_problem(path: Path, expected_size: tuple[int, int]) -> str | None:
    """Why ``path`` cannot serve as an image of (width, height) ``expected_size``, or None if it can.

    Opens and decodes the file (JPEGs at 1/8 scale, a few ms each) so that truncated or corrupt
    files are caught here rather than in the middle of a model run.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return "missing image file"
    try:
        with Image.open(path) as im:
            size = im.size
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "unreadable image"
    if tuple(size) != tuple(expected_size):
        return "image size differs from annotation"
    return None

"""COCO 2017 files under a data folder, read entry by entry with clear errors.

Shared by the ``coco_pairs`` and ``vsr`` benchmark plugins (no plugin imports another).

Expected layout (the COCO 2017 release, unzipped into one folder)::

    DATA_DIR/annotations/instances_val2017.json    (from annotations_trainval2017.zip)
    DATA_DIR/annotations/instances_train2017.json
    DATA_DIR/val2017/*.jpg                          (from val2017.zip)
    DATA_DIR/train2017/*.jpg                        (from train2017.zip)

The folder comes from ``data_dir`` (the CLI's ``--data-dir`` / ``CREG_DATA_DIR``); when that is
not given, the environment variable ``CREG_COCO_DIR`` and then ``CREG_DATA_DIR`` are read.
A missing file raises :class:`creg.plugins.benchmark.DataNotFound` naming the file, the COCO download
that contains it and where to put it; a file that is not a COCO instances file at all (not
JSON, a list instead of an object) raises :class:`creg.plugins.benchmark.DataInvalid`.

Entries are checked one by one (:func:`load_instances`): a malformed image entry (no id, a
null or non-positive width, a ``file_name`` that is absolute or leaves the image folder) or
annotation (a bbox that is not four finite numbers, an unknown category or image id) is
skipped and counted in :attr:`CocoIndex.skipped` with its reason; the rest of the file is used.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creg.core.images import image_problem  # noqa: F401  (re-exported: the benchmarks check images with it)
from creg.core.paths import UnsafePath, resolve_inside
from creg.plugins.benchmark import DataInvalid, DataNotFound

COCO_SPLITS: tuple[str, ...] = ("val2017", "train2017")
COCO_DOWNLOAD_PAGE = "https://cocodataset.org/#download"
_IMAGE_ZIPS = {"val2017": "2017 Val images (val2017.zip)", "train2017": "2017 Train images (train2017.zip)"}
_ANNOTATION_ZIP = "2017 Train/Val annotations (annotations_trainval2017.zip)"
#: how many problem messages an index keeps (the counts in ``skipped`` are complete).
MAX_PROBLEMS_KEPT = 20

# Reasons an entry is skipped.
MALFORMED_IMAGE = "malformed image entry"
UNSAFE_PATH = "image path outside the data folder"
MALFORMED_ANNOTATION = "malformed annotation"
UNKNOWN_CATEGORY = "annotation with unknown category id"
UNKNOWN_IMAGE = "annotation of an unknown image id"
MALFORMED_CATEGORY = "malformed category entry"


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


def image_folder(root: Path, split: str) -> Path:
    """The split's image folder; DataNotFound if it is absent."""
    folder = root / check_split(split)
    if not folder.is_dir():
        raise DataNotFound(
            f"COCO image folder not found: {folder}. It is {_IMAGE_ZIPS[split]} from {COCO_DOWNLOAD_PAGE}; "
            f"unzip it into {root} so that {folder.name}/<image>.jpg exists."
        )
    return folder


@dataclass
class CocoIndex:
    """The valid entries of one instances file.

    * ``images``: image id -> its entry (``id``, ``file_name``, ``width``, ``height`` checked);
    * ``annotations_by_image``: image id -> its annotations sorted by id (``bbox`` four finite
      numbers, ``category_id`` known);
    * ``categories``: category id -> name;
    * ``skipped``: reason -> number of entries left out; ``problems``: the first messages.
    """

    path: Path
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    annotations_by_image: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def _skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(f"{self.path.name}: {message}")

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        return self.annotations_by_image.get(image_id, [])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_image(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"expected an object, got {type(entry).__name__}"
    if not _is_int(entry.get("id")):
        return f"id {entry.get('id')!r} is not an integer"
    for key in ("width", "height"):
        v = entry.get(key)
        if not _is_int(v) or v <= 0:
            return f"image {entry['id']}: {key} {v!r} is not a positive integer"
    if not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
        return f"image {entry['id']}: file_name {entry.get('file_name')!r} is not a file name"
    return None


def _check_annotation(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"expected an object, got {type(entry).__name__}"
    for key in ("id", "image_id", "category_id"):
        if not _is_int(entry.get(key)):
            return f"annotation {entry.get('id')!r}: {key} {entry.get(key)!r} is not an integer"
    bbox = entry.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"annotation {entry['id']}: bbox {bbox!r} is not [x, y, width, height] (four finite numbers)"
    if "iscrowd" in entry and entry["iscrowd"] not in (0, 1, True, False):
        return f"annotation {entry['id']}: iscrowd {entry['iscrowd']!r} is not 0 or 1"
    return None


def index_instances(data: Any, path: Path, folder: Path | None = None) -> CocoIndex:
    """A :class:`CocoIndex` of a parsed instances file; DataInvalid if it is not one at all.

    ``folder`` (the split's image folder), when given, is where every ``file_name`` must stay.
    """
    if not isinstance(data, dict):
        raise DataInvalid(f"{path} is not a COCO instances file: expected a JSON object with images, "
                          f"annotations and categories, got a JSON {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataInvalid(f"{path} is not a COCO instances file: {key!r} must be a list, "
                              f"got {type(data.get(key)).__name__}")
    index = CocoIndex(path=path)
    for c in data["categories"]:
        if isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str) and c["name"]:
            index.categories.setdefault(c["id"], c["name"])
        else:
            index._skip(MALFORMED_CATEGORY, f"category {c!r}")
    for entry in data["images"]:
        problem = _check_image(entry)
        if problem:
            index._skip(MALFORMED_IMAGE, problem)
            continue
        try:
            resolve_inside(folder or Path("."), entry["file_name"])
        except UnsafePath as e:
            index._skip(UNSAFE_PATH, f"image {entry['id']}: {e}")
            continue
        index.images.setdefault(entry["id"], entry)
    bad_images = {e.get("id") for e in data["images"] if isinstance(e, dict) and _is_int(e.get("id"))} - set(index.images)
    for entry in data["annotations"]:
        problem = _check_annotation(entry)
        if problem:
            index._skip(MALFORMED_ANNOTATION, problem)
            continue
        if entry["category_id"] not in index.categories:
            index._skip(UNKNOWN_CATEGORY, f"annotation {entry['id']}: category_id {entry['category_id']} is not in categories")
            continue
        if entry["image_id"] not in index.images:
            if entry["image_id"] not in bad_images:  # those of a skipped image are not counted twice
                index._skip(UNKNOWN_IMAGE, f"annotation {entry['id']}: image_id {entry['image_id']} is not in images")
            continue
        index.annotations_by_image.setdefault(entry["image_id"], []).append(entry)
    for anns in index.annotations_by_image.values():
        anns.sort(key=lambda a: a["id"])
    return index


def load_instances(root: Path, split: str) -> CocoIndex:
    """The split's instance annotations, checked entry by entry (see :func:`index_instances`)."""
    path = annotation_path(root, split)
    if not path.is_file():
        raise DataNotFound(missing_annotation_message(root, split))
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataInvalid(f"{path} is not a COCO instances file: {type(e).__name__}: {e}") from None
    except RecursionError:
        raise DataInvalid(f"{path} is not a COCO instances file: its JSON is nested too deeply to read") from None
    except OSError as e:
        raise DataInvalid(f"cannot read {path}: {e}") from None
    return index_instances(data, path, root / split)

"""Generate small COCO-2017-format folders for tests: drawn images plus an instances json.

``write_coco_folder(root, images)`` writes ``root/annotations/instances_<split>.json`` and
``root/<split>/<file>.jpg`` for each split used, in the layout of the COCO release. Objects are
filled rectangles, so what is drawn is what the box says. A ``FixtureImage`` can ask for a
corrupt file (bytes that are not an image) or be left out of the image folder.

``pair_scenes`` and ``edge_case_images`` build the scenes the COCO-Pairs tests use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

#: COCO 2017 category ids of the categories the fixtures use.
CATEGORIES: dict[str, int] = {
    "person": 1, "truck": 8, "bench": 15, "cat": 17, "dog": 18, "elephant": 22, "giraffe": 25,
    "cup": 47, "sandwich": 54, "orange": 55, "couch": 63, "bed": 65,
}
SIZE = (120, 120)


@dataclass
class FixtureObject:
    category: str
    xywh: tuple[float, float, float, float]
    iscrowd: int = 0


@dataclass
class FixtureImage:
    image_id: int
    objects: list[FixtureObject]
    split: str = "val2017"
    size: tuple[int, int] = SIZE
    file_name: str = ""
    corrupt: bool = False  # write garbage bytes instead of a JPEG
    write_file: bool = True
    annotation_ids: list[int] = field(default_factory=list)  # filled in by write_coco_folder

    def __post_init__(self):
        if not self.file_name:
            self.file_name = f"{self.image_id:012d}.jpg"


def _draw(image: FixtureImage, path: Path) -> None:
    if image.corrupt:
        path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + bytes(range(256)))
        return
    canvas = Image.new("RGB", image.size, (230, 230, 230))
    draw = ImageDraw.Draw(canvas)
    for k, obj in enumerate(image.objects):
        x, y, w, h = obj.xywh
        if w > 0 and h > 0:
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=((60 * k) % 255, 90, 200 - 30 * k % 200))
    canvas.save(path, quality=90)


def write_coco_folder(root: Path, images: list[FixtureImage], *, first_annotation_id: int = 1000) -> Path:
    """Write the annotation files and image folders of ``images`` under ``root``; returns ``root``."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    next_id = first_annotation_id
    by_split: dict[str, dict] = {}
    for image in images:
        doc = by_split.setdefault(image.split, {
            "info": {"description": "creg test fixture"}, "licenses": [], "images": [], "annotations": [],
            "categories": [{"id": i, "name": n, "supercategory": "thing"} for n, i in sorted(CATEGORIES.items())],
        })
        doc["images"].append({"id": image.image_id, "file_name": image.file_name,
                              "width": image.size[0], "height": image.size[1]})
        image.annotation_ids = []
        for obj in image.objects:
            x, y, w, h = obj.xywh
            doc["annotations"].append({
                "id": next_id, "image_id": image.image_id, "category_id": CATEGORIES[obj.category],
                "bbox": [x, y, w, h], "area": max(w, 0) * max(h, 0), "iscrowd": obj.iscrowd,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            })
            image.annotation_ids.append(next_id)
            next_id += 1
        if image.write_file:
            folder = root / image.split
            folder.mkdir(exist_ok=True)
            _draw(image, folder / image.file_name)
    for split, doc in by_split.items():
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def pair_scenes(n_horizontal: int, n_vertical: int, first_image_id: int = 1) -> list[FixtureImage]:
    """Clean two-object images: a cat and a dog side by side (horizontal) or stacked (vertical).

    Each image gives two candidates: the dog relative to the cat and the cat relative to the dog.
    """
    images = []
    for k in range(n_horizontal + n_vertical):
        jitter = 2 * (k % 5)
        if k < n_horizontal:
            cat, dog = (10 + jitter, 40, 30, 30), (75, 45 - jitter, 30, 30)
            if k % 2:
                cat, dog = dog, cat
        else:
            cat, dog = (45, 8 + jitter, 30, 30), (40 - jitter, 78, 30, 30)
            if k % 2:
                cat, dog = dog, cat
        images.append(FixtureImage(first_image_id + k, [FixtureObject("cat", cat), FixtureObject("dog", dog)]))
    return images


def edge_case_images(first_image_id: int = 900) -> dict[str, FixtureImage]:
    """One image per selection rule or data problem, each with a clear left/right pair otherwise."""
    i = first_image_id
    return {
        # the person is a crowd box: never an instance, yet it makes "person" occur in the image
        "crowd": FixtureImage(i, [FixtureObject("person", (5, 30, 40, 60), iscrowd=1), FixtureObject("cup", (80, 50, 25, 25))]),
        # two cups and a dog: "cup" is ambiguous under instances=unique; both cups are left of the dog
        "two_cups": FixtureImage(i + 1, [FixtureObject("cup", (5, 50, 30, 30)), FixtureObject("cup", (40, 55, 12, 12)),
                                         FixtureObject("dog", (85, 50, 30, 30))]),
        # the bench covers 9/14400 of the image: tiny under the default min_area 0.01
        "tiny": FixtureImage(i + 2, [FixtureObject("bench", (10, 55, 3, 3)), FixtureObject("bed", (70, 40, 40, 40))]),
        # a well-annotated pair but the file is not a JPEG
        "corrupt": FixtureImage(i + 3, [FixtureObject("elephant", (5, 40, 30, 30)), FixtureObject("giraffe", (80, 40, 30, 30))],
                                corrupt=True),
        # the truck box has zero width: building the sample must fail and be counted
        "zero_width": FixtureImage(i + 4, [FixtureObject("truck", (10, 50, 0, 20)), FixtureObject("couch", (80, 45, 30, 30))]),
        # the orange box runs 30 px past the right border
        "outside": FixtureImage(i + 5, [FixtureObject("sandwich", (5, 40, 30, 30)), FixtureObject("orange", (100, 40, 50, 30))]),
    }

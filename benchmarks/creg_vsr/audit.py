"""``creg audit vsr``: the paper's Table 7 (VSR box-matching audit) recomputed from the files at hand.

For each part of a split: Positive (label-1 rows; from the shipped jsonl alone), Directional
(positive rows whose relation maps to a creg direction), Not annotated (directional rows whose
image is not in the provided annotation files - they cannot be matched here), Matched (boxes
found for both names), Coverage = Matched / Positive and Validity = matched rows whose boxes
make a valid sample (positive width and height, inside the image) / Matched.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import click

from .matching import IMAGE_NOT_ANNOTATED, INSTANCE_RULES, NEGATIVE, NOT_DIRECTIONAL, CocoInstances, RowMatch, match_row
from .relations import MAPPINGS
from .rows import PARTS, SPLITS, load_rows

#: The CREG paper's Table 7 (random split): part -> (positive, matched).
PAPER_TABLE_7: dict[str, tuple[int, int]] = {"test": (1181, 240), "dev": (564, 121), "train": (3876, 828)}


@dataclass
class AuditLine:
    part: str
    positive: int = 0
    directional: int = 0
    not_annotated: int = 0
    matched: int = 0
    valid: int = 0
    other: Counter = field(default_factory=Counter)  # directional rows unmatched for another reason

    def add(self, other: "AuditLine") -> None:
        for name in ("positive", "directional", "not_annotated", "matched", "valid"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.other.update(other.other)


def _boxes_valid(m: RowMatch) -> bool:
    from creg.core.sample import InvalidSample, make_sample

    def box(ann):
        x, y, w, h = (float(v) for v in ann["bbox"])
        return {"x0": x, "y0": y, "x1": x + w, "y1": y + h}

    try:
        make_sample(
            id=m.row.row_id, image=Path(m.row.image), image_size=(int(m.image["width"]), int(m.image["height"])),
            ref_name=m.row.object, ref_box=box(m.ref_ann), tgt_name=m.row.subject, tgt_box=box(m.tgt_ann),
            relation=m.relation,
        )
    except InvalidSample:
        return False
    return True


def audit_part(split: str, part: str, coco: CocoInstances | None, mapping: str, instances: str) -> AuditLine:
    line = AuditLine(part)
    for row in load_rows(split, part):
        m = match_row(row, coco, mapping=mapping, instances=instances)
        if m.outcome == NEGATIVE:
            continue
        line.positive += 1
        if m.outcome == NOT_DIRECTIONAL:
            continue
        line.directional += 1
        if m.outcome == IMAGE_NOT_ANNOTATED:
            line.not_annotated += 1
        elif m.matched:
            line.matched += 1
            line.valid += _boxes_valid(m)
        else:
            line.other[m.outcome] += 1
    return line


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def format_table(lines: list[AuditLine], *, have_annotations: bool) -> list[str]:
    total = AuditLine("total")
    for line in lines:
        total.add(line)
    out = [f"{'Split':<7} {'Positive':>8} {'Directional':>11} {'Not annotated*':>14} {'Matched':>7}  Coverage / Validity"]
    for line in [*lines, total]:
        if have_annotations:
            matched, cov = str(line.matched), f"{_percent(line.matched, line.positive)} / {_percent(line.valid, line.matched)}"
            not_annotated = str(line.not_annotated)
        else:
            matched, cov, not_annotated = "-", "- / -", "-"
        label = line.part.capitalize()
        out.append(f"{label:<7} {line.positive:>8} {line.directional:>11} {not_annotated:>14} {matched:>7}  {cov}")
    if total.other:
        out.append("Directional but unmatched: " + ", ".join(f"{k}: {v}" for k, v in sorted(total.other.items())))
    return out


@click.command("vsr")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="COCO 2017 folder with annotations/instances_{train,val}2017.json "
                   "(default: $CREG_DATA_DIR, then $CREG_COCO_DIR). Without it only Positive/Directional are counted.")
@click.option("--split", type=click.Choice(SPLITS), default="random", show_default=True)
@click.option("--mapping", type=click.Choice(tuple(MAPPINGS)), default="strict", show_default=True,
              help="relation table: strict (creg's) or paper (reproduces the paper's Table 7 counts)")
@click.option("--instances", type=click.Choice(INSTANCE_RULES), default="largest", show_default=True,
              help="rule when a category has several instances in the image")
def audit_vsr_command(data_dir: Path | None, split: str, mapping: str, instances: str) -> None:
    """VSR box-matching audit in the layout of the paper's Table 7."""
    from creg.coco.annotations import COCO_SPLITS, annotation_path, load_instances

    if data_dir is None:
        env = os.environ.get("CREG_DATA_DIR") or os.environ.get("CREG_COCO_DIR")
        data_dir = Path(env) if env else None
    present: list[str] = []
    coco = None
    if data_dir is not None:
        if not data_dir.is_dir():
            raise click.ClickException(f"data folder not found: {data_dir}")
        present = [s for s in COCO_SPLITS if annotation_path(data_dir, s).is_file()]
        if present:
            coco = CocoInstances({s: load_instances(data_dir, s) for s in present})
    lines = [audit_part(split, part, coco, mapping, instances) for part in PARTS]
    click.echo(f"VSR bounding-box matching audit: split {split}, mapping {mapping}, instances {instances}")
    click.echo(f"COCO annotations: {', '.join(str(annotation_path(data_dir, s)) for s in present) if present else 'none'}")
    click.echo("")
    for text in format_table(lines, have_annotations=coco is not None):
        click.echo(text)
    click.echo("")
    if coco is None:
        click.echo("* Matched needs the COCO 2017 instance annotations: pass --data-dir DIR with "
                   "DIR/annotations/instances_{train,val}2017.json.")
    else:
        missing = [s for s in COCO_SPLITS if s not in present]
        click.echo("* Not annotated: directional rows whose image is not in the provided annotations "
                   "(cannot be matched here; 0 with the full COCO 2017 annotation files)."
                   + (f" Missing files: {', '.join(f'instances_{s}.json' for s in missing)}." if missing else ""))
    if split == "random":
        paper = ", ".join(f"{p.capitalize()} {pos}/{m} {_percent(m, pos)}" for p, (pos, m) in PAPER_TABLE_7.items())
        click.echo(f"Paper Table 7 (random, Positive/Matched Coverage): {paper}; Total 5621/1189 21.2% / 100%.")
        click.echo("The paper's Matched counts equal the Directional column of --mapping paper "
                   "(above/on top of/on/below/under; no left or right): see docs/benchmarks.md.")

"""The embedded synthetic benchmark: exact boxes, balanced classes, clear relations, seeded."""

import numpy as np

from creg.sample import RELATIONS, relation_from_boxes
from creg_synthetic.benchmark import SyntheticBenchmark
from creg_synthetic.scenes import COLOURS, scene_sample


def test_balanced_seeded_and_clear():
    samples = list(SyntheticBenchmark(seed=3, n=40).samples())
    assert [s.relation for s in samples[:4]] == list(RELATIONS)
    assert {r: sum(s.relation == r for s in samples) for r in RELATIONS} == {r: 10 for r in RELATIONS}
    for s in samples:
        assert relation_from_boxes(s.ref_box, s.tgt_box, 1.5) == s.relation  # displacement ratio > 1.5
        assert s.ref_name != s.tgt_name
    again = list(SyntheticBenchmark(seed=3, n=40).samples())
    assert [s.summary() for s in samples] == [s.summary() for s in again]
    other = list(SyntheticBenchmark(seed=4, n=40).samples())
    assert [s.summary()["ref"] for s in samples] != [s.summary()["ref"] for s in other]


def test_prefix_stable_and_size_configurable():
    short = list(SyntheticBenchmark(seed=1, n=4, width=320, height=200).samples())
    long = list(SyntheticBenchmark(seed=1, n=8, width=320, height=200).samples())
    assert [s.summary() for s in short] == [s.summary() for s in long[:4]]
    assert all(s.image_size == (320, 200) and s.load_image().size == (320, 200) for s in short)


def test_boxes_are_exact_the_pixels_inside_carry_the_named_colour():
    s = scene_sample(0, 5)
    img = np.asarray(s.load_image())
    for name, box in ((s.ref_name, s.ref_box), (s.tgt_name, s.tgt_box)):
        colour = np.array(COLOURS[name.split()[0]])
        cx, cy = map(int, box.center)
        assert (img[cy, cx] == colour).all()
        # nothing of this colour outside the box
        mask = (img == colour).all(axis=-1)
        ys, xs = np.nonzero(mask)
        assert xs.min() >= box.x0 and xs.max() < box.x1 and ys.min() >= box.y0 and ys.max() < box.y1

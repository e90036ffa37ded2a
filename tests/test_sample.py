"""The data model: boxes, samples and their error messages."""

import math

import pytest
from PIL import Image

from creg.core.sample import Box, InvalidSample, RELATIONS, make_sample, relation_from_boxes, true_angle


def good(**over):
    base = dict(id="s1", image=Image.new("RGB", (100, 50)), image_size=(100, 50), ref_name="cup",
                ref_box=Box(x0=10, y0=10, x1=20, y1=20), tgt_name="bottle",
                tgt_box=Box(x0=60, y0=10, x1=70, y1=20), relation="right")
    base.update(over)
    return base


@pytest.mark.parametrize("bad,msg", [
    (dict(x0=5, y0=0, x1=5, y1=1), "x0 must be < x1"),
    (dict(x0=0, y0=3, x1=1, y1=2), "y0 must be < y1"),
    (dict(x0=float("nan"), y0=0, x1=1, y1=1), "finite"),
    (dict(x0=0, y0=0, x1=float("inf"), y1=1), "finite"),
])
def test_box_validation(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Box(**bad)


def test_box_from_coco_xywh_and_centre():
    b = Box.from_xywh(10, 20, 30, 40)
    assert b.as_list() == [10, 20, 40, 60] and b.center == (25, 40) and b.area == 1200


def test_true_angle_follows_eq4_convention():
    a = Box(x0=0, y0=0, x1=2, y1=2)
    assert true_angle(a, Box(x0=10, y0=0, x1=12, y1=2)) == pytest.approx(0)
    assert true_angle(a, Box(x0=0, y0=-10, x1=2, y1=-8)) == pytest.approx(90)
    assert true_angle(a, Box(x0=-10, y0=10, x1=-8, y1=12)) == pytest.approx(225)


def test_relation_from_boxes_needs_a_dominant_axis():
    a = Box(x0=0, y0=0, x1=2, y1=2)
    assert relation_from_boxes(a, Box(x0=20, y0=5, x1=22, y1=7)) == "right"
    assert relation_from_boxes(a, Box(x0=0, y0=20, x1=2, y1=22)) == "below"
    assert relation_from_boxes(a, Box(x0=10, y0=10, x1=12, y1=12)) is None  # diagonal
    assert RELATIONS == ("left", "right", "above", "below")


def test_bad_sample_names_the_sample_and_the_field():
    with pytest.raises(InvalidSample, match=r"sample 's7': tgt_box \[90.0, 10.0, 130.0, 20.0\] lies outside the image of size 100x50"):
        make_sample(**good(id="s7", tgt_box=Box(x0=90, y0=10, x1=130, y1=20)))
    with pytest.raises(InvalidSample, match=r"sample 's1': relation"):
        make_sample(**good(relation="behind"))
    with pytest.raises(InvalidSample, match=r"sample 's1': ref_box.*x0 must be < x1"):
        make_sample(**good(ref_box=dict(x0=5, y0=0, x1=1, y1=1)))


def test_missing_and_unreadable_images_fail_clearly(tmp_path):
    s = make_sample(**good(image=tmp_path / "nope.jpg"))
    with pytest.raises(FileNotFoundError, match="s1.*nope.jpg"):
        s.load_image()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="cannot read image"):
        make_sample(**good(image=bad)).load_image()


def test_summary_is_json_ready_and_has_no_pixels():
    s = make_sample(**good())
    d = s.summary()
    assert d["image"] is None and d["ref"]["box"] == [10, 10, 20, 20] and d["relation"] == "right"
    assert math.isclose(s.angle, 0.0, abs_tol=1e-9) and s.option == 1

"""COCO RLE and polygon rasterisation (tinyseg.data.rle), checked by hand and by round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tinyseg.data.rle import (
    counts_to_mask,
    counts_to_string,
    mask_to_counts,
    polygon_to_mask,
    rle_area,
    rle_decode,
    rle_encode,
    string_to_counts,
)

# A real pycocotools output (cocodataset/cocoapi issue #492), size [1520, 2704].
COCOAPI_COUNTS = (
    "ea_d21__11O0001O00000001O01O00a^40_aK000[k]30eTbL010O0000001O000000000010O00000001O01O00000"
    "001O01O0000010O00000001O000001O0001O0000010O0000000000010O0000000000010O0000000010O00000000"
    "0010O00000001O01OO10001O000000P]jP1"
)


# ----------------------------------------------------------------------------- run lengths


def test_counts_are_column_major_and_start_with_background():
    mask = np.array([[0, 1], [1, 1], [1, 0]], dtype=bool)  # column-major: 0 1 1 | 1 1 0
    assert mask_to_counts(mask) == [1, 4, 1]
    first_on = np.array([[1, 0], [0, 0]], dtype=bool)  # column-major: 1 0 | 0 0
    assert mask_to_counts(first_on) == [0, 1, 3]
    assert mask_to_counts(np.zeros((2, 3), bool)) == [6]
    assert mask_to_counts(np.ones((2, 3), bool)) == [0, 6]


def test_counts_to_mask_inverts_by_hand():
    np.testing.assert_array_equal(
        counts_to_mask([1, 4, 1], 3, 2), np.array([[0, 1], [1, 1], [1, 0]], dtype=bool)
    )


# ----------------------------------------------------------------------------- the string codec


@pytest.mark.parametrize(
    "counts, text",
    [
        ([0, 3, 1], "031"),  # small numbers are one character each: chr(48 + x)
        ([11], ";"),  # 48 + 11 = 59 = ';'
        ([16], "`0"),  # 16 needs two groups: 16 | 32 -> '`', then 0 -> '0'
        ([100], "T3"),  # 100 = 3 * 32 + 4: (4 | 32) -> 'T', then 3 -> '3'
        ([1, 2, 3, 1], "123O"),  # index 3 codes 1 - 2 = -1 -> group 31 -> chr(79) 'O'
        ([0, 1, 11, 1, 11, 1], "01;000"),  # differences from index 3 on are all 0
    ],
)
def test_known_strings_by_hand(counts, text):
    assert counts_to_string(counts) == text
    assert string_to_counts(text) == counts


def test_known_string_decodes_to_hand_drawn_mask():
    expected = np.zeros((5, 5), dtype=bool)
    expected[[0, 2, 4], [0, 2, 4]] = True  # flat column-major positions 0, 12, 24
    mask = rle_decode({"size": [5, 5], "counts": "01;000"})
    np.testing.assert_array_equal(mask, expected)
    assert rle_encode(expected) == {"size": [5, 5], "counts": "01;000"}
    assert rle_decode({"size": [5, 5], "counts": b"01;000"}).sum() == 3  # bytes, as pycocotools


def test_real_pycocotools_string():
    counts = string_to_counts(COCOAPI_COUNTS)
    assert sum(counts) == 1520 * 2704 and min(counts) >= 0
    mask = rle_decode({"size": [1520, 2704], "counts": COCOAPI_COUNTS})
    assert mask.shape == (1520, 2704)
    assert rle_encode(mask)["counts"] == COCOAPI_COUNTS  # pycocotools' coding is canonical
    assert rle_area({"size": [1520, 2704], "counts": COCOAPI_COUNTS}) == mask.sum()


@settings(max_examples=25, deadline=None)
@given(arrays(bool, st.tuples(st.integers(0, 9), st.integers(0, 9))))
def test_mask_round_trip(mask):
    for compressed in (True, False):
        rle = rle_encode(mask, compressed=compressed)
        assert rle["size"] == list(mask.shape)
        assert isinstance(rle["counts"], str if compressed else list)
        np.testing.assert_array_equal(rle_decode(rle), mask)
        assert rle_area(rle) == mask.sum()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 2_000_000), max_size=12))
def test_counts_string_round_trip(counts):
    text = counts_to_string(counts)
    assert all("0" <= ch <= "o" for ch in text)
    assert string_to_counts(text) == counts


def test_blocky_mask_round_trip():
    mask = np.zeros((40, 30), dtype=bool)
    mask[5:30, 3:20] = True
    mask[10:12, 25:29] = True
    rle = rle_encode(mask)
    np.testing.assert_array_equal(rle_decode(rle), mask)
    np.testing.assert_array_equal(rle_decode(rle_encode(mask.astype(np.uint8))), mask)


# ----------------------------------------------------------------------------- bad input


def test_bad_rle_input_names_the_problem():
    with pytest.raises(ValueError, match="counts"):
        rle_decode({"size": [2, 2], "counts": [1, 2]})  # sums to 3, not 4
    with pytest.raises(ValueError, match="counts"):
        rle_decode({"size": [2, 2], "counts": "0~"})  # '~' is outside '0'..'o'
    with pytest.raises(ValueError, match="counts"):
        string_to_counts("P")  # bit 5 set: a number cut off
    with pytest.raises(ValueError, match="counts"):
        counts_to_mask([2, -1, 3], 2, 2)
    with pytest.raises(ValueError, match="size"):
        rle_decode({"size": [2], "counts": [4]})
    with pytest.raises(ValueError, match="size"):
        rle_decode({"counts": [4]})
    with pytest.raises(ValueError, match="mask"):
        rle_encode(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="mask"):
        rle_encode(np.zeros(4, bool))


# ----------------------------------------------------------------------------- polygons


def test_rectangle_fill_by_hand():
    # Centres (c + .5, r + .5) inside x in [1, 4), y in [1, 3): columns 1..3, rows 1..2.
    mask = polygon_to_mask([[1, 1, 4, 1, 4, 3, 1, 3]], 5, 6)
    expected = np.zeros((5, 6), dtype=bool)
    expected[1:3, 1:4] = True
    np.testing.assert_array_equal(mask, expected)
    reversed_order = polygon_to_mask([[1, 3, 4, 3, 4, 1, 1, 1]], 5, 6)
    np.testing.assert_array_equal(reversed_order, expected)
    np.testing.assert_array_equal(polygon_to_mask([1, 1, 4, 1, 4, 3, 1, 3], 5, 6), expected)


def test_triangle_fill_by_hand():
    # Triangle (0,0), (4,0), (0,4): centre inside when x + y < 4, i.e. c + r <= 2 -> 3+2+1 = 6.
    mask = polygon_to_mask([[0, 0, 4, 0, 0, 4]], 4, 4)
    expected = np.array(
        [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]],
        dtype=bool,
    )
    np.testing.assert_array_equal(mask, expected)


def test_centre_on_edge_rule():
    # x in [0.5, 2.5]: centre 0.5 sits on the left edge (in), 2.5 on the right edge (out).
    mask = polygon_to_mask([[0.5, 0, 2.5, 0, 2.5, 1, 0.5, 1]], 1, 4)
    np.testing.assert_array_equal(mask, [[True, True, False, False]])
    # Two squares sharing the edge x = 2 split the pixels without overlap or gap.
    left = polygon_to_mask([[0, 0, 2, 0, 2, 3, 0, 3]], 3, 4)
    right = polygon_to_mask([[2, 0, 4, 0, 4, 3, 2, 3]], 3, 4)
    assert not (left & right).any() and (left | right).all()


def test_union_of_parts_and_even_odd_hole():
    two = polygon_to_mask([[0, 0, 2, 0, 2, 2, 0, 2], [3, 3, 5, 3, 5, 5, 3, 5]], 5, 5)
    assert two.sum() == 8 and two[0:2, 0:2].all() and two[3:5, 3:5].all()
    # One ring-shaped polygon: outer square 0..6, then back round the inner square 2..4 along
    # a zero-width seam. Even-odd leaves the inner 2x2 empty.
    ring = [0, 0, 6, 0, 6, 6, 0, 6, 0, 2, 2, 2, 2, 4, 4, 4, 4, 2, 0, 2]
    mask = polygon_to_mask([ring], 6, 6)
    assert mask.sum() == 36 - 4 and not mask[2:4, 2:4].any()


def test_circle_area_and_degenerate_and_clipping():
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    poly = np.stack([20 + 12 * np.cos(t), 20 + 12 * np.sin(t)], axis=1).ravel()
    area = polygon_to_mask([poly.tolist()], 40, 40).sum()
    assert abs(area - np.pi * 144) < 0.05 * np.pi * 144
    assert not polygon_to_mask([[0, 0, 3, 3]], 4, 4).any()  # two points: no area
    clipped = polygon_to_mask([[-5, -5, 10, -5, 10, 2, -5, 2]], 4, 3)
    assert clipped[:2].all() and not clipped[2:].any()
    assert polygon_to_mask([], 3, 3).shape == (3, 3)


def test_polygon_bad_input():
    with pytest.raises(ValueError, match="polygons"):
        polygon_to_mask([[0, 0, 1]], 3, 3)
    with pytest.raises(ValueError, match="polygons"):
        polygon_to_mask("square", 3, 3)
    with pytest.raises(ValueError, match="h and w"):
        polygon_to_mask([[0, 0, 1, 0, 1, 1]], -1, 3)

"""Tests of tinyseg/ops/roi.py and the roi section of tinyseg/functional.py.

The test standard of docs/design.md for both RoI ops: a float64 gradient check with a random
upstream gradient, fast == naive (forward and backward) on awkward boxes, the
shape algebra by hypothesis, hand-worked examples, edge cases and bad input
that names the argument. RoIPool uses tie-free inputs (plus one test of its
tie rule); RoIAlign is linear in x and gets an adjoint test. Oracles: torch's
grid_sample for the bilinear samples, and torchvision where it is installed.
"""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opcheck import FEW, assert_backward_matches, random_like
from test_pool import inner, tie_free  # tie-free values 0.1 apart; <a, b>

import tinyseg as ts
import tinyseg.functional as F
from tinyseg.backend import to_numpy
from tinyseg.ops import roi as R

# (spatial_scale, sampling_ratio, aligned): fixed and adaptive grids, both offsets
ALIGN_SETTINGS = [
    (1.0, -1, False),
    (1.0, 2, True),
    (0.5, 0, True),
    (0.5, 3, False),
    (0.25, -1, True),
]


def awkward_rois(xp, N, H, W, scale, seed=0):
    """(K, 5) rois on N images of a (H, W) map at ``scale``: every kind of box a detector sends.

    Ordinary boxes, boxes partly and wholly outside the map, negative corners,
    boxes smaller than one bin, zero-size boxes and a flipped one (x2 < x1).
    """
    rng = numpy.random.default_rng(seed)
    h, w = H / scale, W / scale  # the map's extent in image pixels
    boxes = [
        [0, 0, w, h],
        [0.3 * w, 0.2 * h, 0.9 * w, 0.7 * h],
        [-0.4 * w, -0.3 * h, 0.5 * w, 0.6 * h],  # partly outside, negative corner
        [0.6 * w, 0.5 * h, 1.5 * w, 1.3 * h],  # partly outside bottom right
        [1.2 * w, 1.1 * h, 1.6 * w, 1.9 * h],  # wholly outside
        [-0.9 * w, 0.1 * h, -0.2 * w, 0.4 * h],  # wholly outside on the left
        [0.41 * w, 0.37 * h, 0.43 * w, 0.4 * h],  # smaller than a bin
        [0.5 * w, 0.5 * h, 0.5 * w, 0.5 * h],  # zero size
        [0.7 * w, 0.2 * h, 0.3 * w, 0.6 * h],  # flipped: x2 < x1
    ]
    corners = rng.uniform(-0.2, 1.1, (6, 2)) * [w, h]
    sizes = rng.uniform(0.05, 0.8, (6, 2)) * [w, h]
    boxes += numpy.concatenate([corners, corners + sizes], axis=1).tolist()
    batch = numpy.arange(len(boxes)) % N
    return xp.asarray(numpy.column_stack([batch, boxes]), dtype=xp.float64)


def ramp(xp, H=4, W=4):
    """x[0, 0, h, w] = W*h + w: bilinear sampling of a ramp is exact, so answers are by hand."""
    return xp.arange(H * W, dtype=xp.float64).reshape(1, 1, H, W)


def rois_of(xp, *boxes):
    return xp.asarray([[0.0, *b] for b in boxes])


# ===== boxes_to_rois ===============================================================


def test_boxes_to_rois_from_a_list(xp):
    boxes = [xp.asarray([[1.0, 2, 3, 4], [5, 6, 7, 8]]), xp.zeros((0, 4)),
             xp.asarray([[0.0, 0, 1, 1]])]
    rois = R.boxes_to_rois(boxes)
    expected = [[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [2, 0, 0, 1, 1]]
    numpy.testing.assert_array_equal(to_numpy(rois), expected)
    assert rois.dtype == xp.float64
    f32 = R.boxes_to_rois([xp.asarray([[1, 2, 3, 4]], dtype=xp.float32)])
    assert f32.dtype == xp.float32  # the boxes' dtype, the batch index included
    ints = R.boxes_to_rois([xp.asarray([[1, 2, 3, 4]])], xp_like=xp.zeros(1, dtype=xp.float32))
    assert ints.dtype == xp.float32  # integer boxes take the features' float dtype
    assert R.boxes_to_rois([], xp_like=xp.zeros(1)).shape == (0, 5)


def test_boxes_to_rois_passes_k5_through(xp):
    rois = xp.asarray([[1.0, 0, 0, 2, 2]])
    assert R.boxes_to_rois(rois) is rois


@pytest.mark.parametrize(
    "make",
    [lambda xp: xp.zeros((3, 4)), lambda xp: xp.zeros((3, 5, 1)), lambda xp: xp.zeros(5),
     lambda xp: [xp.zeros((2, 5))], lambda xp: [xp.zeros(4)], lambda xp: (1.0, 2.0, 3.0, 4.0)],
)
def test_boxes_to_rois_bad_shapes_name_boxes(xp, make):
    with pytest.raises(ValueError, match="boxes"):
        R.boxes_to_rois(make(xp))


# ===== roi_align ===================================================================


@pytest.mark.task("roi_align_backward")
@pytest.mark.parametrize("scale, sampling_ratio, aligned", ALIGN_SETTINGS)
def test_roi_align_backward_gradcheck(xp, scale, sampling_ratio, aligned):
    x = random_like(xp, (2, 2, 5, 6), seed=3)
    rois = awkward_rois(xp, 2, 5, 6, scale, seed=1)
    assert_backward_matches(
        R.roi_align_forward, R.roi_align_backward,
        [x, rois, (3, 2), scale, sampling_ratio, aligned], [0],
    )


@pytest.mark.task("roi_align_forward")
@pytest.mark.parametrize("scale, sampling_ratio, aligned", ALIGN_SETTINGS)
@pytest.mark.parametrize("output_size", [(3, 4), 1, (2, 5)])
def test_roi_align_matches_naive(xp, scale, sampling_ratio, aligned, output_size):
    x = random_like(xp, (3, 2, 7, 9), seed=4)
    rois = awkward_rois(xp, 3, 7, 9, scale, seed=2)
    out, _ = R.roi_align_forward(x, rois, output_size, scale, sampling_ratio, aligned)
    naive = R.roi_align_naive(x, rois, output_size, scale, sampling_ratio, aligned)
    assert out.shape == naive.shape and out.dtype == x.dtype
    numpy.testing.assert_allclose(to_numpy(out), to_numpy(naive), atol=1e-12)


@pytest.mark.task("roi_align_backward")
@pytest.mark.parametrize("scale, sampling_ratio, aligned", ALIGN_SETTINGS)
def test_roi_align_backward_matches_naive_and_is_the_adjoint(xp, scale, sampling_ratio, aligned):
    """dx equals the loop's, and <roi_align(x), y> = <x, roi_align_backward(y)> (a transpose)."""
    x = random_like(xp, (3, 2, 7, 9), seed=5)
    rois = awkward_rois(xp, 3, 7, 9, scale, seed=3)
    out, cache = R.roi_align_forward(x, rois, (3, 4), scale, sampling_ratio, aligned)
    y = random_like(xp, out.shape, seed=6)
    dx = R.roi_align_backward(y, cache)
    naive = R.roi_align_backward_naive(y, x.shape, rois, (3, 4), scale, sampling_ratio, aligned)
    numpy.testing.assert_allclose(to_numpy(dx), to_numpy(naive), atol=1e-12)
    assert inner(xp, out, y) == pytest.approx(inner(xp, x, dx), rel=1e-12, abs=1e-12)


@pytest.mark.task("roi_align_forward")
def test_roi_align_by_hand_on_a_ramp(xp):
    x = ramp(xp)  # value 4h + w
    box = rois_of(xp, (0, 0, 4, 4))
    # 2x2 bins of size 2, one sample each at the bin centres 1 and 3
    out, _ = R.roi_align_forward(x, box, 2, sampling_ratio=1)
    numpy.testing.assert_allclose(to_numpy(out[0, 0]), [[5, 7], [13, 15]])
    # aligned: the box moves by -0.5, the samples to 0.5 and 2.5
    out, _ = R.roi_align_forward(x, box, 2, sampling_ratio=1, aligned=True)
    numpy.testing.assert_allclose(to_numpy(out[0, 0]), [[2.5, 4.5], [10.5, 12.5]])
    # 2x2 samples per bin, at 0.5, 1.5 | 2.5, 3.5; past row H-1 = 3 the map is flat, so the
    # sample at 3.5 reads 3: the last bin's mean coordinate is (2.5 + 3)/2 = 2.75, not 3
    out, _ = R.roi_align_forward(x, box, 2, sampling_ratio=2)
    numpy.testing.assert_allclose(to_numpy(out[0, 0]), [[5, 6.75], [12, 13.75]])
    # spatial_scale: a box in image pixels at stride 2
    out, _ = R.roi_align_forward(x, rois_of(xp, (2, 4, 6, 8)), 1, 0.5, 1)
    numpy.testing.assert_allclose(to_numpy(out[0, 0]), [[4 * 3 + 2]])


@pytest.mark.task("roi_align_forward")
def test_roi_align_border_rules_by_hand(xp):
    x = ramp(xp)
    cases = [
        ((2, 2, 6, 6), 15.0),  # sample at (4, 4): y = H is still in range and uses row H-1
        ((3, 0, 6, 1), 0.0),  # sample at x = 4.5 > W: outside, adds 0
        ((-2.5, 0, -0.5, 1), 0.0),  # sample at x = -1.5 < -1: outside
        ((-1.5, 1, -0.5, 2), 6.0),  # x = -1 is in range and clamps to 0: 4 * 1.5 + 0
        ((-1.2, 0, 0.2, 1), 2.0),  # x = -0.5 clamps to 0: 4 * 0.5 + 0
    ]
    for box, expected in cases:
        out, _ = R.roi_align_forward(x, rois_of(xp, box), 1, sampling_ratio=1)
        naive = R.roi_align_naive(x, rois_of(xp, box), 1, sampling_ratio=1)
        assert float(out[0, 0, 0, 0]) == pytest.approx(expected), box
        assert float(naive[0, 0, 0, 0]) == pytest.approx(expected), box


@pytest.mark.task("roi_align_forward")
def test_roi_align_outside_samples_count_in_the_mean(xp):
    x = xp.ones((1, 1, 4, 4))
    # width 8 from x = -6, two samples along x: -4 (outside, adds 0) and 0 (inside, adds 1)
    out, _ = R.roi_align_forward(x, rois_of(xp, (-6, 0, 2, 1)), 1, sampling_ratio=2)
    assert float(out[0, 0, 0, 0]) == pytest.approx(0.5)
    # a box wholly outside gives 0
    out, _ = R.roi_align_forward(x, rois_of(xp, (10, 10, 20, 20)), 2)
    assert not bool(xp.any(out))


@pytest.mark.task("roi_align_backward")
def test_roi_align_box_outside_sends_no_gradient(xp):
    x = xp.ones((1, 1, 4, 4))
    _, cache = R.roi_align_forward(x, rois_of(xp, (10, 10, 20, 20), (-9, 0, -6, 3)), 2)
    assert not bool(xp.any(R.roi_align_backward(xp.ones((2, 1, 2, 2)), cache)))


@pytest.mark.task("roi_align_forward")
def test_roi_align_small_and_zero_size_boxes(xp):
    x = ramp(xp)
    point = rois_of(xp, (1.5, 1.5, 1.5, 1.5))
    # aligned=False clamps the size to 1: one bin from 1.5 to 2.5, sample at 2.0
    out, _ = R.roi_align_forward(x, point, 1)
    assert float(out[0, 0, 0, 0]) == pytest.approx(10.0)
    # aligned=True keeps size 0: the adaptive grid is ceil(0) = 0 samples -> 0
    out, _ = R.roi_align_forward(x, point, 1, aligned=True)
    assert float(out[0, 0, 0, 0]) == 0.0
    # ... but a fixed grid still samples the point itself, at 1.0 after the offset
    out, _ = R.roi_align_forward(x, point, 2, sampling_ratio=2, aligned=True)
    numpy.testing.assert_allclose(to_numpy(out[0, 0]), numpy.full((2, 2), 5.0))
    # a box thinner than a bin: 7x7 bins of a tenth of a pixel, all within one cell
    out, _ = R.roi_align_forward(x, rois_of(xp, (1.2, 1.2, 1.9, 1.9)), 7, aligned=True)
    naive = R.roi_align_naive(x, rois_of(xp, (1.2, 1.2, 1.9, 1.9)), 7, aligned=True)
    numpy.testing.assert_allclose(to_numpy(out), to_numpy(naive), atol=1e-12)


def test_roi_align_adaptive_grid_is_per_roi(xp):
    """A large box gets ceil(size / bins) samples per bin, a small one 1, in one call."""
    x = random_like(xp, (1, 1, 16, 16), seed=9)
    rois = rois_of(xp, (0, 0, 16, 16), (3, 3, 4, 4))
    out, _ = R.roi_align_forward(x, rois, 2)  # grids 8x8 and 1x1
    for k, grid in ((0, 8), (1, 1)):
        alone, _ = R.roi_align_forward(x, rois[k:k + 1], 2, sampling_ratio=grid)
        numpy.testing.assert_allclose(to_numpy(out[k]), to_numpy(alone[0]), atol=1e-12)


def test_roi_align_aligned_shifts_by_half_a_pixel(xp):
    x = random_like(xp, (1, 2, 8, 8), seed=10)
    box = (1.3, 2.1, 5.7, 6.2)
    shifted = tuple(v - 0.5 for v in box)
    aligned, _ = R.roi_align_forward(x, rois_of(xp, box), 3, sampling_ratio=2, aligned=True)
    legacy, _ = R.roi_align_forward(x, rois_of(xp, shifted), 3, sampling_ratio=2)
    numpy.testing.assert_allclose(to_numpy(aligned), to_numpy(legacy), atol=1e-12)


def test_roi_align_several_images_and_list_input(xp):
    x = random_like(xp, (3, 2, 6, 6), seed=11)
    boxes = [xp.asarray([[0.5, 1.0, 4.0, 5.5], [2.0, 2.0, 6.0, 3.0]]), xp.zeros((0, 4)),
             xp.asarray([[1.0, 0.0, 5.0, 5.0]])]
    out_list, cache = R.roi_align_forward(x, boxes, 2, 1.0, 2)
    out_rois, _ = R.roi_align_forward(x, R.boxes_to_rois(boxes), 2, 1.0, 2)
    numpy.testing.assert_array_equal(to_numpy(out_list), to_numpy(out_rois))
    # each RoI reads its own image only: image 1 has no boxes and gets no gradient
    dx = R.roi_align_backward(random_like(xp, out_list.shape, 12), cache)
    assert not bool(xp.any(dx[1])) and bool(xp.any(dx[0])) and bool(xp.any(dx[2]))
    alone, _ = R.roi_align_forward(x[2:], [boxes[2]], 2, 1.0, 2)
    numpy.testing.assert_allclose(to_numpy(out_list[2]), to_numpy(alone[0]), atol=1e-12)


def test_roi_align_no_rois(xp):
    x = random_like(xp, (2, 3, 5, 5))
    out, cache = R.roi_align_forward(x, xp.zeros((0, 5)), (2, 3))
    assert out.shape == (0, 3, 2, 3)
    dx = R.roi_align_backward(out, cache)
    assert dx.shape == x.shape and not bool(xp.any(dx))


def test_roi_align_float32(xp):
    x = random_like(xp, (1, 2, 6, 6), seed=13).astype(xp.float32)
    rois = awkward_rois(xp, 1, 6, 6, 1.0).astype(xp.float32)
    out, cache = R.roi_align_forward(x, rois, 3, 1.0, 2)
    dx = R.roi_align_backward(out, cache)
    assert out.dtype == xp.float32 and dx.dtype == xp.float32
    out64, _ = R.roi_align_forward(x.astype(xp.float64), rois, 3, 1.0, 2)
    numpy.testing.assert_allclose(to_numpy(out), to_numpy(out64), atol=1e-5)


# ===== roi_pool ====================================================================


@pytest.mark.task("roi_pool_backward")
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_roi_pool_backward_gradcheck(xp, scale):
    x = tie_free(xp, (2, 2, 5, 6), seed=1)
    rois = awkward_rois(xp, 2, 5, 6, scale, seed=5)
    assert_backward_matches(
        R.roi_pool_forward, R.roi_pool_backward, [x, rois, (3, 2), scale], [0]
    )


@pytest.mark.task("roi_pool_forward")
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.3])
@pytest.mark.parametrize("output_size", [(3, 4), 1, (4, 2)])
def test_roi_pool_matches_naive(xp, scale, output_size):
    x = tie_free(xp, (3, 2, 7, 9), seed=2)
    rois = awkward_rois(xp, 3, 7, 9, scale, seed=6)
    out, (argmax, _, _) = R.roi_pool_forward(x, rois, output_size, scale)
    naive, naive_argmax = R.roi_pool_naive(x, rois, output_size, scale)
    assert out.dtype == x.dtype and argmax.dtype == xp.int64
    assert bool(xp.all(out == naive)) and bool(xp.all(argmax == naive_argmax))


@pytest.mark.task("roi_pool_backward")
def test_roi_pool_empty_bins_send_no_gradient(xp):
    x = tie_free(xp, (1, 1, 4, 4))
    _, cache = R.roi_pool_forward(x, rois_of(xp, (5, 5, 8, 8), (-6, 0, -3, 3)), 2)
    assert not bool(xp.any(R.roi_pool_backward(xp.ones((2, 1, 2, 2)), cache)))


@pytest.mark.task("roi_pool_backward")
def test_roi_pool_backward_goes_to_the_argmax(xp):
    x = tie_free(xp, (2, 2, 6, 7), seed=3)
    rois = awkward_rois(xp, 2, 6, 7, 1.0, seed=7)
    out, cache = R.roi_pool_forward(x, rois, (3, 2))
    dout = random_like(xp, out.shape, seed=4)
    dx = R.roi_pool_backward(dout, cache)
    _, argmax = R.roi_pool_naive(x, rois, (3, 2))
    expected = numpy.zeros(x.shape)
    batch, dout_host, argmax = to_numpy(rois[:, 0]).astype(int), to_numpy(dout), to_numpy(argmax)
    for k, c, ph, pw in numpy.ndindex(*argmax.shape):  # a shared argmax collects every gradient
        if argmax[k, c, ph, pw] >= 0:
            h, w = divmod(int(argmax[k, c, ph, pw]), x.shape[3])
            expected[batch[k], c, h, w] += dout_host[k, c, ph, pw]
    numpy.testing.assert_allclose(to_numpy(dx), expected, atol=1e-12)


@pytest.mark.task("roi_pool_forward")
def test_roi_pool_by_hand_on_a_ramp(xp):
    x = ramp(xp)  # value 4h + w
    # inclusive rounding: 0..3 is 4 cells, 2x2 bins of 2: the bottom-right of each bin wins
    out, _ = R.roi_pool_forward(x, rois_of(xp, (0, 0, 3, 3)), 2)
    numpy.testing.assert_array_equal(to_numpy(out[0, 0]), [[5, 7], [13, 15]])
    # 0.5 and 2.5 round half AWAY from zero, to 1 and 3 (numpy's round would give 0 and 2)
    out, _ = R.roi_pool_forward(x, rois_of(xp, (1, 1, 5, 5)), 1, spatial_scale=0.5)
    assert float(out[0, 0, 0, 0]) == 15.0
    out, _ = R.roi_pool_forward(x, rois_of(xp, (1, 1, 5, 5)), 3, spatial_scale=0.5)
    numpy.testing.assert_array_equal(to_numpy(out[0, 0]), [[5, 6, 7], [9, 10, 11], [13, 14, 15]])
    # negative corners: round(-0.5) = -1, the bins are clipped to the map
    out, _ = R.roi_pool_forward(x, rois_of(xp, (-1, -1, 1, 1)), 1, spatial_scale=0.5)
    assert float(out[0, 0, 0, 0]) == 5.0  # cells -1..1 clipped to 0..1: max is x[1, 1]


@pytest.mark.task("roi_pool_forward")
def test_roi_pool_empty_bins_give_zero(xp):
    x = -1.0 - tie_free(xp, (1, 1, 4, 4)) ** 2  # all negative: a 0 must come from an empty bin
    out, cache = R.roi_pool_forward(x, rois_of(xp, (5, 5, 8, 8), (-6, 0, -3, 3)), 2)
    assert not bool(xp.any(out))
    assert bool(xp.all(cache[0] == -1))  # no argmax, so no gradient
    # a box 1 cell wide in 2 bins: the bins are floor/ceil of 0.5, so both hold that cell
    out, _ = R.roi_pool_forward(x, rois_of(xp, (1, 1, 1, 1)), 2)
    assert bool(xp.all(out == x[0, 0, 1, 1]))


@pytest.mark.task("roi_pool_forward")
def test_roi_pool_ties_go_to_the_first_maximum(xp):
    x = xp.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = x[0, 0, 2, 3] = 1.0
    out, (argmax, _, _) = R.roi_pool_forward(x, rois_of(xp, (0, 0, 3, 3)), 1)
    _, naive_argmax = R.roi_pool_naive(x, rois_of(xp, (0, 0, 3, 3)), 1)
    assert int(argmax[0, 0, 0, 0]) == 1 * 4 + 2 == int(naive_argmax[0, 0, 0, 0])
    # all zeros: the first cell of the bin, in row-major order
    out, (argmax, _, _) = R.roi_pool_forward(xp.zeros((1, 1, 4, 4)), rois_of(xp, (1, 2, 3, 3)), 1)
    assert int(argmax[0, 0, 0, 0]) == 2 * 4 + 1


def test_roi_pool_no_rois_and_float32(xp):
    x = tie_free(xp, (2, 3, 5, 5)).astype(xp.float32)
    out, cache = R.roi_pool_forward(x, [xp.zeros((0, 4)), xp.zeros((0, 4))], 2)
    assert out.shape == (0, 3, 2, 2) and out.dtype == xp.float32
    assert not bool(xp.any(R.roi_pool_backward(out, cache)))
    out, cache = R.roi_pool_forward(x, awkward_rois(xp, 2, 5, 5, 1.0).astype(xp.float32), 2)
    assert out.dtype == xp.float32 and R.roi_pool_backward(out, cache).dtype == xp.float32


def test_roi_pool_chunks_agree(xp, monkeypatch):
    x = tie_free(xp, (2, 3, 6, 6), seed=8)
    rois = awkward_rois(xp, 2, 6, 6, 1.0, seed=9)
    whole, _ = R.roi_pool_forward(x, rois, 3)
    monkeypatch.setattr(R, "_POOL_CHUNK_ELEMENTS", 1)  # one RoI per chunk
    chunked, _ = R.roi_pool_forward(x, rois, 3)
    assert bool(xp.all(whole == chunked))


# ===== shape algebra ===============================================================


@FEW
@given(
    n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
    k=st.integers(0, 4), ph=st.integers(1, 4), pw=st.integers(1, 4),
    scale=st.sampled_from([1.0, 0.5, 0.25, 2.0, 0.3]), sampling_ratio=st.integers(-1, 3),
    aligned=st.booleans(), seed=st.integers(0, 2**16),
)
def test_roi_shape_algebra(xp, n, c, h, w, k, ph, pw, scale, sampling_ratio, aligned, seed):
    rng = numpy.random.default_rng(seed)
    corners = rng.uniform(-2, max(h, w) + 1, (k, 4)) / scale
    rois = xp.asarray(numpy.column_stack([rng.integers(0, n, k), corners]), dtype=xp.float64)
    x = tie_free(xp, (n, c, h, w), seed)
    out, cache = R.roi_align_forward(x, rois, (ph, pw), scale, sampling_ratio, aligned)
    assert out.shape == (k, c, ph, pw)
    assert R.roi_align_backward(out, cache).shape == x.shape
    naive = R.roi_align_naive(x, rois, (ph, pw), scale, sampling_ratio, aligned)
    numpy.testing.assert_allclose(to_numpy(out), to_numpy(naive), atol=1e-12)
    out, cache = R.roi_pool_forward(x, rois, (ph, pw), scale)
    assert out.shape == (k, c, ph, pw) and R.roi_pool_backward(out, cache).shape == x.shape
    naive, naive_argmax = R.roi_pool_naive(x, rois, (ph, pw), scale)
    assert bool(xp.all(out == naive)) and bool(xp.all(cache[0] == naive_argmax))


# ===== bad input ===================================================================


def _bad_inputs(xp):
    """(x, boxes, kwargs, exception, the name the message must hold)."""
    x = xp.zeros((2, 1, 4, 4))
    box = xp.asarray([[0.0, 0, 0, 2, 2]])
    return [
        (xp.zeros((1, 4, 4)), box, {}, ValueError, "x"),
        (xp.zeros((2, 1, 4, 4), dtype=xp.int64), box, {}, TypeError, "x"),
        (x, xp.zeros((3, 4)), {}, ValueError, "boxes"),
        (x, xp.zeros((3, 5, 1)), {}, ValueError, "boxes"),
        (x, [xp.zeros((1, 5)), xp.zeros((1, 5))], {}, ValueError, "boxes"),
        (x, [xp.zeros((1, 4))], {}, ValueError, "boxes"),  # one list entry, two images
        (x, xp.asarray([[2.0, 0, 0, 2, 2]]), {}, ValueError, "boxes"),  # batch index N
        (x, xp.asarray([[-1.0, 0, 0, 2, 2]]), {}, ValueError, "boxes"),
        (x, xp.asarray([[0.5, 0, 0, 2, 2]]), {}, ValueError, "boxes"),  # not a whole number
        (x, box, {"output_size": 0}, ValueError, "output_size"),
        (x, box, {"output_size": (2, 2, 2)}, ValueError, "output_size"),
        (x, box, {"spatial_scale": 0.0}, ValueError, "spatial_scale"),
        (x, box, {"spatial_scale": -0.5}, ValueError, "spatial_scale"),
        (x, box, {"spatial_scale": "1/16"}, TypeError, "spatial_scale"),
    ]


@pytest.mark.parametrize("case", range(14))
@pytest.mark.parametrize("op", ["align", "pool"])
def test_roi_bad_input_names_the_argument(xp, op, case):
    x, boxes, kwargs, exc, name = _bad_inputs(xp)[case]
    kwargs = {"output_size": 2, **kwargs}
    forward = R.roi_align_forward if op == "align" else R.roi_pool_forward
    with pytest.raises(exc, match=name):
        forward(x, boxes, **kwargs)


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [({"sampling_ratio": 1.5}, TypeError, "sampling_ratio"),
     ({"sampling_ratio": True}, TypeError, "sampling_ratio"),
     ({"aligned": 1}, TypeError, "aligned")],
)
def test_roi_align_bad_options(xp, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        R.roi_align_forward(xp.zeros((1, 1, 4, 4)), xp.asarray([[0.0, 0, 0, 2, 2]]), 2, **kwargs)


# ===== functional ==================================================================


def test_functional_roi_align_gradcheck_and_list_boxes(xp):
    x = ts.tensor(random_like(xp, (2, 2, 5, 5), seed=14), requires_grad=True)
    boxes = [ts.tensor(xp.asarray([[0.5, 1.0, 4.0, 4.5]])),
             xp.asarray([[1.0, 0.0, 3.0, 5.0], [-1.0, 2.0, 2.0, 6.0]])]
    for aligned in (False, True):
        assert ts.gradcheck(lambda t, a=aligned: F.roi_align(t, boxes, (2, 3), 1.0, 2, a), [x])
    out = F.roi_align(x, boxes, 2, sampling_ratio=-1)
    assert isinstance(out, ts.Tensor) and out.shape == (3, 2, 2, 2) and out.requires_grad
    rois = ts.tensor(R.boxes_to_rois([b.data if isinstance(b, ts.Tensor) else b for b in boxes]))
    numpy.testing.assert_array_equal(to_numpy(F.roi_align(x, rois, 2).data), to_numpy(out.data))
    assert F.roi_align(x.data, rois.data, 2).shape == (3, 2, 2, 2)  # raw arrays work too


def test_functional_roi_pool_gradcheck(xp):
    x = ts.tensor(tie_free(xp, (2, 2, 5, 5), seed=15), requires_grad=True)
    boxes = xp.asarray([[0, 0.5, 1.0, 4.0, 4.5], [1, 1.0, 0.0, 3.0, 5.0], [1, 2, 2, 2, 2]])
    assert ts.gradcheck(lambda t: F.roi_pool(t, boxes, (2, 3)), [x])
    out = F.roi_pool(x, ts.tensor(boxes), 2, spatial_scale=0.5)
    assert out.shape == (3, 2, 2, 2) and out.requires_grad


# ===== oracles =====================================================================


def test_roi_align_matches_torch_grid_sample(xp):
    """Inside the map, RoIAlign is bilinear sampling (torch's grid_sample) plus a mean."""
    torch = pytest.importorskip("torch")
    H, W, PH, PW, g = 9, 11, 3, 4, 2
    x = random_like(xp, (1, 2, H, W), seed=16)
    boxes = [(0.0, 0.0, 10.0, 8.0), (1.3, 2.2, 7.9, 6.1), (4.5, 0.6, 6.2, 7.7)]
    out, cache = R.roi_align_forward(x, rois_of(xp, *boxes), (PH, PW), 1.0, g)
    dout = random_like(xp, out.shape, seed=17)
    dx = R.roi_align_backward(dout, cache)
    tx = torch.tensor(to_numpy(x), requires_grad=True)
    expected = []
    for x1, y1, x2, y2 in boxes:  # sample points (PH*g, PW*g), as align_corners=True coordinates
        ys = y1 + (numpy.arange(PH * g) + 0.5) * (y2 - y1) / (PH * g)
        xs = x1 + (numpy.arange(PW * g) + 0.5) * (x2 - x1) / (PW * g)
        gy, gx = numpy.meshgrid(ys / (H - 1) * 2 - 1, xs / (W - 1) * 2 - 1, indexing="ij")
        grid = torch.tensor(numpy.stack([gx, gy], -1)[None])
        samples = torch.nn.functional.grid_sample(tx, grid, align_corners=True)
        expected.append(samples.reshape(1, 2, PH, g, PW, g).mean(dim=(3, 5)))
    expected = torch.cat(expected)
    expected.backward(torch.tensor(to_numpy(dout)))
    numpy.testing.assert_allclose(to_numpy(out), expected.detach().numpy(), atol=1e-12)
    numpy.testing.assert_allclose(to_numpy(dx), tx.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_ops_torchvision_oracle(xp, aligned):
    torch = pytest.importorskip("torch")
    try:  # a torchvision built for another torch raises RuntimeError, not ImportError
        import torchvision
        torchvision.ops.roi_align  # noqa: B018
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"torchvision is not usable here: {type(err).__name__}")
    x = tie_free(xp, (2, 3, 7, 9), seed=18)
    rois = awkward_rois(xp, 2, 7, 9, 0.5, seed=10)
    tx, trois = torch.tensor(to_numpy(x), requires_grad=True), torch.tensor(to_numpy(rois))
    for sampling_ratio in (-1, 2):
        out, cache = R.roi_align_forward(x, rois, (3, 4), 0.5, sampling_ratio, aligned)
        dout = random_like(xp, out.shape, seed=19)
        t_out = torchvision.ops.roi_align(tx, trois, (3, 4), 0.5, sampling_ratio, aligned)
        tx.grad = None
        t_out.backward(torch.tensor(to_numpy(dout)))
        numpy.testing.assert_allclose(to_numpy(out), t_out.detach().numpy(), atol=1e-12)
        dx = R.roi_align_backward(dout, cache)
        numpy.testing.assert_allclose(to_numpy(dx), tx.grad.numpy(), atol=1e-12)
    out, cache = R.roi_pool_forward(x, rois, (3, 4), 0.5)
    tx.grad = None
    t_out = torchvision.ops.roi_pool(tx, trois, (3, 4), 0.5)
    t_out.backward(torch.tensor(to_numpy(dout)))
    numpy.testing.assert_array_equal(to_numpy(out), t_out.detach().numpy())
    numpy.testing.assert_allclose(to_numpy(R.roi_pool_backward(dout, cache)), tx.grad.numpy())

"""Device budgets: syncs per training step and per evaluation, counted on the strict device.

A sync (a host read of a device value) stalls the GPU. These budgets keep a per-box or per-RoI
round trip from creeping back: NMS copies its overlap matrix once, scatters are atomic adds,
targets are checked on the host, and the training loop reads the loss and its terms in one copy.
The numbers were measured with ``python benchmarks/device_counts.py --batch-size 2 --models all``
(docs/gpu.md has the table); a budget is that count, and a change that needs more must say why.
"""

from __future__ import annotations

import numpy
import pytest
import strict_device
from conftest import STRICT

from tinyseg import backend
from tinyseg.boxes import batched_nms, nms
from tinyseg.ops.roi import roi_align_forward, roi_pool_forward

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not STRICT, reason="counts need the strict simulated device")]

# model: (syncs per training step, syncs per evaluation of 2 images), at batch 2.
BUDGETS = {
    "fcn32s": (3, 10), "fcn16s": (3, 10), "fcn8s": (3, 10), "unet": (3, 10), "segnet": (6, 13),
    "deeplab": (3, 10), "yolo": (4, 10), "classloc": (2, 12), "retinanet": (1, 10),
    "fasterrcnn": (16, 21), "maskrcnn": (32, 28),
}


@pytest.mark.parametrize("model", sorted(BUDGETS))
def test_a_training_step_and_an_evaluation_stay_within_their_sync_budget(model):
    import devicecheck

    step = devicecheck.step_counts(model, batch_size=2)
    assert step.syncs <= BUDGETS[model][0], step.top("syncs")
    assert step.d2h <= 3, step.top("d2h")  # the loss read, plus one NMS copy per image (RPN)
    evaluation = devicecheck.eval_counts(model, batch_size=2)
    assert evaluation.syncs <= BUDGETS[model][1], evaluation.top("syncs")


def _boxes(xp, n, seed=0):
    rng = numpy.random.default_rng(seed)
    xy = rng.uniform(0, 90, (n, 2))
    wh = rng.uniform(5, 30, (n, 2))
    return xp.asarray(numpy.concatenate([xy, xy + wh], axis=1)), xp.asarray(rng.random(n))


@pytest.mark.parametrize("n", [20, 400])
def test_nms_syncs_do_not_grow_with_the_number_of_boxes(n):
    xp = backend.cupy_module()
    boxes, scores = _boxes(xp, n)
    classes = xp.asarray(numpy.arange(n) % 3)
    with strict_device.counting() as c:
        kept = nms(boxes, scores, 0.5)
        batched_nms(boxes, scores, classes, 0.5)
    assert kept.shape[0] > 5
    assert c.syncs == 2 and c.d2h == 2, c.top("syncs")  # one overlap-matrix copy per call


def test_scatter_add_is_an_atomic_add_without_syncs():
    xp = backend.cupy_module()
    target = xp.zeros((4, 5), dtype=xp.float32)
    index, values = xp.asarray([0, 0, 19]), xp.asarray([1.0, 2.0, 3.0])
    with strict_device.counting() as c:
        backend.scatter_add(target, index, values)
    assert c.syncs == 0 and c.h2d == 0
    assert float(target[0, 0]) == 3.0 and float(target[3, 4]) == 3.0


@pytest.mark.parametrize("op", [roi_align_forward, roi_pool_forward])
def test_roi_ops_sync_per_image_not_per_roi(op):
    xp = backend.cupy_module()
    x = xp.asarray(numpy.random.default_rng(1).standard_normal((2, 3, 16, 16)))
    counts = []
    for k in (4, 64):
        boxes, _ = _boxes(numpy, k)
        rois = xp.asarray(numpy.concatenate([(numpy.arange(k) % 2)[:, None], boxes / 8], 1))
        with strict_device.counting() as c:
            op(x, rois, (3, 3), 1.0)
        counts.append(c.syncs)
    assert counts[0] == counts[1] <= 6, counts  # a few per image (2 here), none per RoI

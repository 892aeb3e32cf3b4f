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
from tinyseg.boxes import batched_nms, nms, nms_by_image
from tinyseg.ops.roi import roi_align_forward, roi_pool_forward

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not STRICT, reason="counts need the strict simulated device")]

# model: (syncs per training step, syncs per evaluation of 2 images, d2h copies per training
# step), at batch 2. A copy is one sync as well; most syncs left are the sizes of
# data-dependent results (nonzero), per image, never per box or RoI.
BUDGETS = {
    "fcn32s": (3, 10, 1), "fcn16s": (3, 10, 1), "fcn8s": (3, 10, 1), "unet": (3, 10, 1),
    "segnet": (6, 13, 1), "deeplab": (3, 10, 1), "yolo": (4, 9, 1), "classloc": (2, 12, 1),
    "retinanet": (1, 9, 1),
    # the loss read, the RPN's one NMS (2 copies), one per RoI op (image block sizes)
    "fasterrcnn": (14, 17, 4), "maskrcnn": (23, 23, 6),
}


@pytest.mark.parametrize("model", sorted(BUDGETS))
def test_a_training_step_and_an_evaluation_stay_within_their_sync_budget(model):
    import devicecheck

    step_syncs, eval_syncs, step_d2h = BUDGETS[model]
    step = devicecheck.step_counts(model, batch_size=2)
    assert step.syncs <= step_syncs, step.top("syncs")
    assert step.d2h <= step_d2h, step.top("d2h")
    evaluation = devicecheck.eval_counts(model, batch_size=2)
    assert evaluation.syncs <= eval_syncs, evaluation.top("syncs")


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


@pytest.mark.parametrize("num_images", [1, 8])
def test_one_nms_for_a_batch_costs_two_syncs_whatever_the_batch(num_images):
    xp = backend.cupy_module()
    boxes, scores = _boxes(xp, 50 * num_images)
    images = xp.asarray(numpy.arange(50 * num_images) % num_images)
    with strict_device.counting() as c:
        kept = nms_by_image(boxes, scores, None, images, num_images, 0.5, top_n=10)
    assert len(kept) == num_images and all(k.shape[0] == 10 for k in kept)
    assert c.syncs == 2 and c.d2h == 2, c.top("syncs")  # the counts, then the overlaps


def test_scatter_add_is_an_atomic_add_without_syncs():
    xp = backend.cupy_module()
    target = xp.zeros((4, 5), dtype=xp.float32)
    index, values = xp.asarray([0, 0, 19]), xp.asarray([1.0, 2.0, 3.0])
    with strict_device.counting() as c:
        backend.scatter_add(target, index, values)
    assert c.syncs == 0 and c.h2d == 0
    assert float(target[0, 0]) == 3.0 and float(target[3, 4]) == 3.0


@pytest.mark.parametrize("op", [roi_align_forward, roi_pool_forward])
def test_roi_ops_syncs_grow_with_neither_rois_nor_images(op):
    xp = backend.cupy_module()
    counts = []
    for images, k in ((2, 4), (2, 64), (8, 64)):
        x = xp.asarray(numpy.random.default_rng(1).standard_normal((images, 3, 16, 16)))
        boxes, _ = _boxes(numpy, k)
        rois = xp.asarray(numpy.concatenate([(numpy.arange(k) % images)[:, None], boxes / 8], 1))
        with strict_device.counting() as c:
            op(x, rois, (3, 3), 1.0)
        counts.append(c.syncs)
    # the batch-index check, the image block sizes, RoIAlign's two sample-grid sizes
    assert counts[0] == counts[1] == counts[2] <= 4, counts


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_an_optimiser_step_is_a_few_launches_whatever_the_number_of_parameters(name):
    from tinyseg import nn, optim

    xp = backend.cupy_module()
    counts = []
    for n_params in (4, 40):
        params = [nn.Parameter(xp.ones((3, 2))) for _ in range(n_params)]
        opt = getattr(optim, name)(params, lr=0.1, **({"momentum": 0.9} if name == "SGD" else {}))
        for _ in range(2):  # the first step packs the flat arrays; count the second
            for p in params:
                p.grad = xp.ones((3, 2))
            with strict_device.counting() as c:
                opt.step()
        assert c.syncs == 0 and c.h2d == 0, c.top("syncs")
        counts.append(c.launches)
    assert counts[0] == counts[1] <= 16, counts


@pytest.mark.parametrize("model_name", ["retinanet", "fasterrcnn"])
def test_anchors_are_built_once_per_image_size_device_and_dtype(model_name):
    from tinyseg.models import build_model

    model = build_model(model_name, num_classes=4)
    first = model.anchors(64, 64, device="gpu")
    with strict_device.counting() as c:
        again = model.anchors(64, 64, device="gpu")
    assert again is first and c.launches == 0 and c.h2d == 0
    assert model.anchors(64, 64, device="cpu") is not first  # another device, another grid
    assert model.anchors(64, 64, device="gpu", dtype="float64").dtype == numpy.float64
    assert model.anchors(128, 64, device="gpu").shape[0] == 2 * first.shape[0]
    assert "_anchor_cache" not in "".join(model.state_dict())  # not saved with the weights

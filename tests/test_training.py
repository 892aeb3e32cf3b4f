"""End to end: small conv nets built from tinyseg.nn really learn, on CPU in seconds."""

from __future__ import annotations

import numpy

import tinyseg as ts
import tinyseg.functional as F
from tinyseg import backend, nn, optim
from tinyseg.checkpoint import load_checkpoint, save_checkpoint


def _squares(n, seed):
    """(n, 1, 12, 12) noisy images with one bright 3x3 square, its side (0 left, 1 right)
    and its mask."""
    rng = numpy.random.default_rng(seed)
    images = rng.normal(0.0, 0.1, (n, 1, 12, 12))
    side = rng.integers(0, 2, n)
    masks = numpy.zeros((n, 12, 12), dtype="int64")
    for i in range(n):
        top = rng.integers(0, 10)
        left = rng.integers(0, 4) + 6 * side[i]  # columns 0..5 or 6..11
        images[i, 0, top:top + 3, left:left + 3] += 1.0
        masks[i, top:top + 3, left:left + 3] = 1
    return images.astype("float32"), side, masks


def _on(xp, array):
    return xp.asarray(array)


def _classifier():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),  # 6x6
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),  # 3x3
        nn.Flatten(), nn.Linear(8 * 3 * 3, 2),
    )


def test_classifier_learns_which_half_holds_the_square(xp, tmp_path):
    device = backend.device_of(xp.zeros(1))
    images, side, _ = _squares(64, seed=0)
    x, y = ts.tensor(_on(xp, images)), _on(xp, side)
    nn.init.manual_seed(0)
    model = _classifier().to(device)
    opt = optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 < losses[0], losses[::5]

    model.eval()
    test_images, test_side, _ = _squares(32, seed=1)
    with ts.no_grad():
        predicted = model(ts.tensor(_on(xp, test_images))).argmax(dim=1)
    accuracy = float((backend.to_numpy(predicted.data) == test_side).mean())
    assert accuracy >= 0.9

    # a checkpoint brings back the same predictions in a fresh model
    path = tmp_path / "classifier.npz"
    save_checkpoint(path, model.state_dict(), {"model": "halves"})
    nn.init.manual_seed(1)
    restored = _classifier().to(device)
    restored.load_state_dict(load_checkpoint(path)[0])
    with ts.no_grad():
        again = restored.eval()(ts.tensor(_on(xp, test_images))).argmax(dim=1)
    assert (backend.to_numpy(again.data) == backend.to_numpy(predicted.data)).all()


def test_segmentation_head_learns_the_square_mask(xp):
    device = backend.device_of(xp.zeros(1))
    images, _, masks = _squares(32, seed=2)
    x, target = ts.tensor(_on(xp, images)), _on(xp, masks)
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    model.to(device)
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9, nesterov=True)
    sched = optim.CosineAnnealingLR(opt, T_max=30, eta_min=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), target)  # logits (N, 2, H, W), target (N, H, W)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 < losses[0], losses[::5]
    with ts.no_grad():
        predicted = model(x).argmax(dim=1)
    assert float((backend.to_numpy(predicted.data) == masks).mean()) > 0.99

"""The default recipes: one per model, buildable, shrunk by TINYSEG_FAST only in size."""

from __future__ import annotations

import json

import numpy
import pytest

import tinyseg as ts
from tinyseg.models import MODELS, build_model
from tinyseg.recipes import FAST, RECIPES, Recipe, default_recipe


def test_every_model_has_a_recipe():
    assert set(RECIPES) == set(MODELS)


@pytest.mark.parametrize("model", RECIPES)
def test_recipe_builds_its_model_for_its_image_size(model):
    recipe = default_recipe(model, fast=False)
    net = build_model(model, num_classes=recipe.num_classes, **recipe.model_options).eval()
    x = numpy.random.default_rng(0).random((2, 3, recipe.image_size, recipe.image_size))
    with ts.no_grad():
        out = net(ts.tensor(x.astype("float32")))
    if getattr(net, "task", "segmentation") == "detection":  # one dict of boxes per image
        assert len(out) == 2 and all(set(d) >= {"boxes", "scores", "labels"} for d in out)
    else:
        assert out.shape == (2, recipe.num_classes, recipe.image_size, recipe.image_size)


@pytest.mark.parametrize("model", RECIPES)
def test_fast_mode_only_shrinks_the_sizes(model):
    full, fast = default_recipe(model, fast=False), default_recipe(model, fast=True)
    for name, value in full.to_dict().items():
        if name in FAST:
            assert getattr(fast, name) == min(value, FAST[name])
        else:
            assert getattr(fast, name) == value, name


def test_fast_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("TINYSEG_FAST", "1")
    assert default_recipe("unet").epochs == FAST["epochs"]
    monkeypatch.setenv("TINYSEG_FAST", "0")
    assert default_recipe("unet").epochs == default_recipe("unet", fast=False).epochs


def test_editing_a_recipe_leaves_the_defaults_alone():
    recipe = default_recipe("segnet", fast=False)
    recipe.model_options["widths"] = (4,)
    assert default_recipe("segnet", fast=False).model_options["widths"] != (4,)


@pytest.mark.parametrize("model", RECIPES)
def test_dict_round_trip_through_json(model):
    recipe = default_recipe(model, fast=False)
    again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again.to_dict() == json.loads(json.dumps(recipe.to_dict()))


def test_from_dict_ignores_unknown_keys_and_replace_skips_none():
    recipe = Recipe.from_dict({"model": "unet", "epochs": 3, "from_the_future": 1})
    assert recipe.epochs == 3
    assert recipe.replace(epochs=None, lr=0.1).epochs == 3
    assert recipe.replace(lr=0.1).lr == 0.1


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="resnet.*unet"):
        default_recipe("resnet")

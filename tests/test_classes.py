"""data.classes: a run on a subset of CIFAR-10's classes, relabelled in the order given."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import train_tiny

from depthsweep.runs.rundir import CHECKPOINT, RUN_JSON
from depthsweep.training.build import build_net
from depthsweep.training.config import compose_config
from depthsweep.training.data import CIFAR10DataModule, class_indices, read_cifar10


def test_a_subset_keeps_its_images_relabelled_in_the_order_given(fake_cifar):
    full = read_cifar10(fake_cifar, download=False)
    dm = CIFAR10DataModule(root=str(fake_cifar), download=False, classes=["cat", 1])
    dm.setup("fit")
    for x_all, y_all, x, y in (
        (full.x_train, full.y_train, dm.data.x_train, dm.data.y_train),
        (full.x_test, full.y_test, dm.data.x_test, dm.data.y_test),
    ):
        cats, cars = y_all == 3, y_all == 1
        assert cats.any() and cars.any()
        # file order kept; cat (label 3) becomes 0 and automobile (label 1) becomes 1
        assert torch.equal(x, x_all[cats | cars])
        assert torch.equal(y, torch.where(y_all[cats | cars] == 3, 0, 1))
    assert dm.test_set["test_images"] == len(dm.data.x_test) and not dm.test_set["test_official"]


@pytest.mark.parametrize(
    "classes, message",
    [
        (["cat", "dgo"], "unknown class 'dgo'; valid: airplane, automobile, bird"),
        ([3, 10], "unknown class 10; valid: .*truck \\(or their labels 0-9\\)"),
        ([True], "unknown class True"),
        (["cat", 3], "names a class twice"),
        ([], "give a non-empty list of classes"),
        ("cat", "give a non-empty list of classes"),
    ],
)
def test_a_bad_class_list_names_the_valid_classes(classes, message):
    with pytest.raises(ValueError, match=message):
        class_indices(classes)
    with pytest.raises(ValueError, match="data.classes"):
        CIFAR10DataModule(classes=classes)  # before any data is read


def test_the_net_has_one_output_per_class():
    assert build_net(compose_config(["depth=8"])).fc.out_features == 10
    net = build_net(compose_config(["depth=8", "data.classes=[ship,0,truck]"]))
    assert net.fc.out_features == 3
    with pytest.raises(ValueError, match="unknown class 'shp'"):
        build_net(compose_config(["depth=8", "data.classes=[shp]"]))


def test_a_run_on_a_subset_trains_a_net_with_that_many_outputs(fake_cifar, tmp_path):
    train_tiny(tmp_path, fake_cifar, "depth=8", "data.classes=[frog,cat]")
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert ckpt["state_dict"]["model.fc.weight"].shape == (2, 64)
    y_test = read_cifar10(fake_cifar, download=False).y_test  # frog is 6, cat 3
    frogs_and_cats = int(((y_test == 6) | (y_test == 3)).sum())
    assert 0 < frogs_and_cats < len(y_test)
    info = json.loads((tmp_path / RUN_JSON).read_text())
    assert (info["test_images"], info["classes"]) == (frogs_and_cats, 2)  # chance: 50% error

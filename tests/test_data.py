"""The CIFAR-10 reader on files in the official format, and the on-device augmentation."""

from __future__ import annotations

import hashlib
import io
import pickle
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torchvision.datasets.utils
from helpers import write_cifar10_batch
from torch import Tensor

from depthsweep.errors import DataError, OptionError
from depthsweep.training import data
from depthsweep.training.data import (
    FOLDER,
    TEST_FILE,
    CIFAR10DataModule,
    DatasetMissingError,
    DeviceBatches,
    describe_test_set,
    random_crop_flip,
    read_cifar10,
)


def test_reader_returns_images_in_channel_planes(fake_cifar):
    data = read_cifar10(fake_cifar, download=False)
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (40, 3, 32, 32) and data.y_train.dtype == torch.int64
    with open(fake_cifar / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    raw = entry["data"][3]  # 1024 red, 1024 green, 1024 blue, row-major
    img = data.x_train[20 + 3]
    assert img[1, 5, 7] == raw[1024 + 5 * 32 + 7]
    assert img[2, 31, 0] == raw[2048 + 31 * 32]
    assert data.y_train[23] == entry["labels"][3]


def test_limit_keeps_the_first_images(fake_cifar):
    full, small = read_cifar10(fake_cifar, False), read_cifar10(fake_cifar, False, limit=30)
    assert len(small.x_train) == 30 and len(small.x_test) == 30
    assert torch.equal(small.x_train, full.x_train[:30])


def test_missing_folder_without_download_names_folder_and_override(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        read_cifar10(tmp_path / "nowhere", download=False)
    assert "cifar-10-batches-py" in str(err.value) and "data.root=" in str(err.value)


def test_offline_download_fails_with_a_clear_message(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", offline)
    with pytest.raises(DatasetMissingError, match="downloading .* failed: .*no network"):
        read_cifar10(tmp_path, download=True)


class LoginPage(io.BytesIO):
    """What a network that answers every address with its own page sends instead of CIFAR-10."""

    url = data.URL
    length = 27


@pytest.mark.parametrize("existing_root", [True, False])
def test_a_download_that_fails_its_md5_check_is_one_error_and_leaves_nothing(
    tmp_path, monkeypatch, existing_root
):
    """torchvision fetches the page, finds its MD5 wrong and raises a RuntimeError: it was a
    run's failure (exit 3) and left the 27-byte file behind, where it is a setup error."""
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: LoginPage(b"<html>login</html>"))
    root = tmp_path / "data"
    if existing_root:
        root.mkdir()
    with pytest.raises(DatasetMissingError, match="downloading .* failed: .*corrupted"):
        read_cifar10(root, download=True)
    assert (list(root.iterdir()) == []) if existing_root else not root.exists()


def test_a_limit_above_the_training_images_is_refused(fake_cifar):
    """data.limit=2000 on a copy of 100 images trained on the 100 and said nothing; the test set
    may be smaller (figure6_cpu: 2,000 and the 1,000 exact test images): it is cut, not filled."""
    assert len(read_cifar10(fake_cifar, False, limit=100, strict=True).x_test) == 40
    fix = "set data.limit to at most 100, or data.root to a copy with more"
    with pytest.raises(
        DataError, match=rf"data.limit=101: .* holds only 100 training images: {fix}"
    ):
        CIFAR10DataModule(root=str(fake_cifar), download=False, limit=101).setup("fit")
    assert len(read_cifar10(fake_cifar, False, limit=101).x_train) == 100  # a cap, evaluating


def test_corrupt_batch_file_is_named(fake_cifar):
    (fake_cifar / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch is not a CIFAR-10 batch file"):
        read_cifar10(fake_cifar, download=False)


def test_crop_flip_output_is_a_padded_crop_of_its_own_input():
    torch.manual_seed(0)
    x = torch.randint(1, 256, (32, 3, 8, 8), dtype=torch.uint8)  # no zeros: padding is visible
    out = random_crop_flip(x, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets, flips = set(), 0
    for img, src in zip(out, padded, strict=True):
        crops = {(dy, dx): src[:, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)}
        matches = [
            (*offset, flip)
            for offset, crop in crops.items()
            for flip in (False, True)
            if torch.equal(img, crop.flip(-1) if flip else crop)
        ]
        assert matches, "every output must be a crop (maybe flipped) of the padded input"
        offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(offsets) > 10 and 4 <= flips <= 28  # independent draws per image


def test_an_epoch_resumes_where_it_stopped():
    """The order's state and the batches trained on, restored into a fresh loader (a resumed
    process), continue the epoch with the same batches, and the next epochs as well."""
    x, y = torch.arange(40).view(40, 1), torch.arange(40)

    def loader():
        return DeviceBatches(x, y, 4, True, True, torch.Generator().manual_seed(7))

    straight = loader()
    whole = [b[1].tolist() for _ in range(3) for b in straight]
    interrupted = loader()
    seen = [b[1].tolist() for b in interrupted]  # epoch 1
    epoch2 = iter(interrupted)
    for _ in range(4):  # three trained on, one more fetched ahead (as Lightning does)
        batch = next(epoch2)
        interrupted.trained += 1
        seen.append(batch[1].tolist())
    interrupted.trained -= 1
    del seen[-1]
    state = interrupted.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    seen += [b[1].tolist() for _ in range(2) for b in resumed]
    assert seen == whole


def test_a_runs_data_comes_from_its_own_seeded_streams(fake_cifar):
    """The order and the crops/flips depend on the run's seed, not on torch's global generator."""

    def first_batch(seed: int, global_seed: int) -> Tensor:
        torch.manual_seed(global_seed)
        dm = CIFAR10DataModule(root=str(fake_cifar), download=False, batch_size=8, seed=seed)
        dm.setup()
        batch = next(iter(dm.train_dataloader()))
        return random_crop_flip(batch[0], 4, dm.augment)

    assert torch.equal(first_batch(3, 0), first_batch(3, 1))
    assert not torch.equal(first_batch(3, 0), first_batch(4, 0))


def test_datamodule_batches_split_and_normalise(fake_cifar):
    dm = CIFAR10DataModule(root=str(fake_cifar), download=False, batch_size=16, val_split=20)
    dm.setup()
    train = dm.train_dataloader()
    assert len(train) == 80 // 16  # ragged last batch dropped
    test, val = dm.val_dataloader()
    assert sum(len(y) for _, y in test) == 40 and sum(len(y) for _, y in val) == 20
    assert torch.equal(next(iter(val))[0], dm.data.x_train[80:])
    # outside training no augmentation: normalised originals
    x, _ = dm.on_after_batch_transfer(next(iter(test)), 0)
    expected = (dm.data.x_test[:40].float() - dm.shift) / dm.scale
    assert torch.allclose(x, expected)
    assert x.dtype == torch.float32


def test_resolution_downsamples_every_image_by_the_mean_of_the_pixels_it_covers(fake_cifar):
    full = CIFAR10DataModule(root=str(fake_cifar), download=False)
    half = CIFAR10DataModule(root=str(fake_cifar), download=False, resolution=16, pad=2)
    full.setup(), half.setup()
    for big, small in [
        (full.data.x_train, half.data.x_train),
        (full.data.x_test, half.data.x_test),
    ]:
        assert small.shape == (len(big), 3, 16, 16) and small.dtype == torch.uint8
        blocks = big.double().reshape(len(big), 3, 16, 2, 16, 2).mean((3, 5))
        assert (small.double() - blocks).abs().max() <= 0.5  # rounded to the nearest level
    x, _ = half.on_after_batch_transfer(next(iter(half.val_dataloader()[0])), 0)
    assert x.shape[1:] == (3, 16, 16)
    assert torch.equal(half.data.y_train, full.data.y_train)


def test_per_pixel_mean_subtracts_the_mean_image_of_the_training_images_in_use(fake_cifar):
    dm = CIFAR10DataModule(
        root=str(fake_cifar), download=False, val_split=20, normalize="per_pixel_mean"
    )
    dm.setup()
    train_x, train_y = dm.data.x_train[:80], dm.data.y_train[:80]  # the last 20 are held out
    x, _ = dm.on_after_batch_transfer((train_x, train_y), 0)  # no trainer: not augmented
    assert x.shape == (80, 3, 32, 32)
    assert x.mean(0).abs().max() < 1e-5  # every pixel of every channel averages to zero
    test_x, test_y = dm.data.x_test, dm.data.y_test
    x, _ = dm.on_after_batch_transfer((test_x, test_y), 0)
    expected = (test_x.double() - train_x.double().mean(0)) / 255
    assert torch.allclose(x.double(), expected, atol=1e-6)


def test_an_unknown_normalisation_is_refused(fake_cifar):
    with pytest.raises(ValueError, match="data.normalize='per_image'"):
        CIFAR10DataModule(root=str(fake_cifar), normalize="per_image")


def test_only_the_official_test_batch_counts_as_the_official_test_set(fake_cifar, monkeypatch):
    folder = fake_cifar / FOLDER
    md5 = hashlib.md5((folder / TEST_FILE).read_bytes()).hexdigest()
    assert describe_test_set(folder, 10_000) == {
        "test_images": 10_000,
        "test_md5": md5,
        "test_official": False,
    }
    monkeypatch.setattr(data, "OFFICIAL_TEST_MD5", md5)  # as if this were the official file
    assert describe_test_set(folder, 10_000)["test_official"]
    assert not describe_test_set(folder, 1000)["test_official"]  # a part of it is not


def _rewrite(path, **entry_changes):
    """Rewrite one official-format batch file with some of its entries replaced."""
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    write_cifar10_batch(path, **{"data": entry["data"], "labels": entry["labels"]} | entry_changes)


@pytest.mark.parametrize(
    "name, change, fault",
    [
        ("data_batch_3", {"labels": [10] * 20}, r"labels outside 0\.\.9 \(found 10\.\.10\)"),
        ("test_batch", {"labels": [-1] + [0] * 39}, r"labels outside 0\.\.9 \(found -1\.\.0\)"),
        ("data_batch_1", {"labels": [0] * 19}, "19 labels for 20 images"),
        ("data_batch_2", {"data": np.zeros((20, 3072), np.float32)}, "data has dtype float32"),
        ("test_batch", {"data": np.zeros((40, 32, 32, 3), np.uint8)}, r"shape \(40, 32, 32, 3\)"),
    ],
)
def test_a_malformed_batch_is_refused_naming_file_fault_and_format(fake_cifar, name, change, fault):
    path = fake_cifar / FOLDER / name
    _rewrite(path, **change)
    with pytest.raises(DataError, match=fault) as err:
        read_cifar10(fake_cifar, download=False)
    message = str(err.value)
    assert message.startswith(str(path)) and "expected the official format: uint8" in message


def test_a_batch_file_that_would_run_code_is_refused(fake_cifar, tmp_path):
    """A pickle can call anything when loaded; a batch file may name nothing but numpy's array."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    path = fake_cifar / FOLDER / "data_batch_2"
    with open(path, "wb") as f:
        pickle.dump({"data": Payload(), "labels": []}, f)
    with pytest.raises(DataError, match=r"data_batch_2 is not a CIFAR-10 batch file: it asks to"
                       r" load builtins\.exec.*refused: loading it could run code"):  # fmt: skip
        read_cifar10(fake_cifar, download=False)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])  # Python 2's batches (the official files) and 3's
def test_batches_pickled_either_way_load(fake_cifar, protocol):
    path = fake_cifar / FOLDER / "data_batch_1"
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry["batch_label"] = b"training batch 1 of 5"  # bytes, as Python 2 wrote them
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=protocol)
    assert len(read_cifar10(fake_cifar, download=False).x_train) == 100


def test_an_empty_test_batch_is_refused(fake_cifar):
    _rewrite(fake_cifar / FOLDER / TEST_FILE, data=np.zeros((0, 3072), np.uint8), labels=[])
    with pytest.raises(DataError, match="test_batch holds no images: a run needs a test set"):
        read_cifar10(fake_cifar, download=False)


def test_labels_of_the_wrong_shape_are_named_so(fake_cifar):
    _rewrite(fake_cifar / FOLDER / "data_batch_1", labels=np.zeros((20, 1), np.int64))
    with pytest.raises(DataError, match=r"labels of shape \(20, 1\), not a list of 20"):
        read_cifar10(fake_cifar, download=False)


def test_no_training_images_is_not_blamed_on_the_validation_split(fake_cifar):
    for name in data.TRAIN_FILES:
        _rewrite(fake_cifar / FOLDER / name, data=np.zeros((0, 3072), np.uint8), labels=[])
    dm = CIFAR10DataModule(root=str(fake_cifar), download=False)
    with pytest.raises(DataError, match="no training images to train on"):
        dm.setup()


def test_a_data_root_that_is_a_file_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="data.root=.*file is a file: point it at the folder"):
        read_cifar10(tmp_path / "file", download=True)


def test_a_batch_without_the_official_keys_is_refused(fake_cifar):
    path = fake_cifar / FOLDER / "data_batch_4"
    with open(path, "wb") as f:
        pickle.dump({"images": np.zeros((20, 3072), np.uint8)}, f)
    with pytest.raises(DataError, match=r"no 'data' and 'labels' keys \(found \['images'\]\)"):
        read_cifar10(fake_cifar, download=False)


def test_a_missing_batch_file_is_named(fake_cifar):
    (fake_cifar / FOLDER / "data_batch_5").unlink()
    with pytest.raises(DataError, match="lacks data_batch_5: an incomplete copy"):
        read_cifar10(fake_cifar, download=False)


@pytest.mark.parametrize(
    "option, message",
    [
        ({"limit": 0}, r"data.limit=0: must be an integer >= 1, or null for all images"),
        ({"limit": -5}, r"data.limit=-5: must be an integer >= 1"),
        ({"batch_size": 0}, r"data.batch_size=0: must be an integer >= 1$"),
        ({"val_split": -1}, r"data.val_split=-1: must be an integer >= 0"),
        ({"resolution": 0}, r"data.resolution=0: must be an integer >= 1"),
        ({"resolution": 64}, r"data.resolution=64: at most 32, CIFAR-10's own size"),
    ],
)
def test_data_options_out_of_range_are_refused(fake_cifar, option, message):
    with pytest.raises(OptionError, match=message):
        CIFAR10DataModule(root=str(fake_cifar), download=False, **option)


def test_data_root_with_a_tilde_is_expanded_once(fake_cifar, monkeypatch):
    monkeypatch.setenv("HOME", str(fake_cifar.parent))
    dm = CIFAR10DataModule(root=f"~/{fake_cifar.name}", download=False)
    assert dm.root == str(fake_cifar)
    dm.setup()
    assert len(dm.data.x_train) == 100

"""CIFAR-10 read from the official "python version" batches, kept as uint8 tensors on the
training device, augmented there in batches (airbench-style: no workers, no per-image Python)."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from depthsweep.errors import DataError, OptionError, check_count

FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # of the official archive; torchvision checks it
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
# The official test_batch (torchvision checks the same MD5): only a run on exactly this file may be
# compared with the paper's test errors.
OFFICIAL_TEST_MD5 = "40351d587109b95175f43aff81a1287e"
OFFICIAL_TEST_IMAGES = 10_000
NORMALIZATIONS = ("per_channel", "per_pixel_mean")
CLASSES = (  # label 0..9, as the official batches.meta names them
    *("airplane", "automobile", "bird", "cat", "deer"),
    *("dog", "frog", "horse", "ship", "truck"),
)
PIXELS = 3 * 32 * 32  # a row of `data`: 1024 red, then 1024 green, then 1024 blue values
AUGMENT_STREAM = 0x5EED_0F_C409  # the augmentation's seed is the run's seed plus this


class DatasetMissingError(DataError, FileNotFoundError):
    """CIFAR-10 is not on disk and could not be fetched."""


class Cifar10(NamedTuple):
    x_train: Tensor  # uint8 (N, 3, 32, 32)
    y_train: Tensor  # int64 (N,)
    x_test: Tensor
    y_test: Tensor


def not_found(folder: Path, option: str = "data.root=DIR") -> str:
    """What to say where `folder` (root/cifar-10-batches-py) is missing, naming the `option`
    that points at the data: a run's data.root, or an entry point's own."""
    return (
        f"CIFAR-10 not found: expected the official python-version batches in {folder.resolve()}. "
        f"Point {option} at the folder that contains {FOLDER}/"
    )


def ensure_cifar10(root: str | Path, download: bool = True, option: str = "data.root=DIR") -> Path:
    """Return `root/cifar-10-batches-py`, fetching the official archive first if it is missing.
    A failed download leaves no trace: a `root` it created is removed again. Its errors name
    `option`, what points at the data."""
    root = Path(root).expanduser()
    folder = root / FOLDER
    if folder.is_dir():
        return folder
    if root.exists() and not root.is_dir():
        raise DataError(f"data.root={root} is a file: point it at the folder that holds {FOLDER}/")
    hint = not_found(folder, option)
    if not download:
        raise DatasetMissingError(f"{hint} (data.download=false).")
    from torchvision.datasets.utils import download_and_extract_archive

    created = not root.exists()
    archive = root / URL.rpartition("/")[2]
    had_archive = archive.exists()
    try:
        download_and_extract_archive(URL, download_root=str(root), md5=MD5)
    # URLError and socket errors are OSErrors (offline); a file that fails the MD5 check (a proxy's
    # login page, a cut-off transfer) is torchvision's RuntimeError
    except (OSError, RuntimeError) as e:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        elif not had_archive:
            archive.unlink(missing_ok=True)
        raise DatasetMissingError(f"{hint}; downloading {URL} failed: {e}") from None
    return folder


# What an official batch's pickle may name: numpy's array and dtype (the `data` array) and the
# codec that Python 2's byte strings come through. A pickle can name any callable and so run
# any code; a data file never needs more than these.
BATCH_GLOBALS = {
    *[("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct")],
    *[("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar")],
    *[("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")],
}


class _BatchUnpickler(pickle.Unpickler):
    """pickle.Unpickler that loads only what a CIFAR-10 batch holds (BATCH_GLOBALS)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in BATCH_GLOBALS:
            raise pickle.UnpicklingError(
                f"it asks to load {module}.{name}, which a CIFAR-10 batch never holds "
                "(refused: loading it could run code)"
            )
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[Tensor, Tensor]:
    """One official batch: a pickled dict of `data` (uint8 N x 3072, RGB planes) and `labels`
    (N ints in 0..9), unpickled with nothing but what that needs. Anything else is a DataError
    naming the file, the fault and the format."""
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(f"{path} is not a CIFAR-10 batch file: {e}") from None
    expected = f"expected the official format: uint8 `data` of shape (N, {PIXELS}), N labels 0..9"
    if not isinstance(entry, dict) or not {"data", "labels"} <= entry.keys():
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise DataError(f"{path}: no 'data' and 'labels' keys (found {keys}); {expected}")
    data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"])
    fault = None
    if data.dtype != np.uint8:
        fault = f"data has dtype {data.dtype}"
    elif data.ndim != 2 or data.shape[1] != PIXELS:
        fault = f"data has shape {data.shape}"
    elif labels.ndim != 1:
        fault = f"labels of shape {labels.shape}, not a list of {len(data)}"
    elif labels.shape != (len(data),):
        fault = f"{labels.size} labels for {len(data)} images"
    elif labels.size and labels.dtype.kind not in "iu":
        fault = f"labels of type {labels.dtype}"
    elif labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        fault = f"labels outside 0..{len(CLASSES) - 1} (found {labels.min()}..{labels.max()})"
    if fault:
        raise DataError(f"{path}: {fault}; {expected}")
    x = torch.from_numpy(np.ascontiguousarray(data)).reshape(-1, 3, 32, 32)  # no copy
    return x, torch.from_numpy(labels.astype(np.int64))


def check_limit(limit: int | None, available: int, folder: Path) -> None:
    """A DataError where a run's data.limit asks for more training images than `folder` holds:
    a run on fewer would pass for the size asked."""
    if limit is not None and limit > available:
        raise DataError(
            f"data.limit={limit}: {folder} holds only {available:,} training images: set "
            f"data.limit to at most {available:,}, or data.root to a copy with more (the test set "
            "may be smaller than data.limit: it is cut to it, not filled)"
        )


def training_images(root: str | Path) -> int:
    """How many training images the copy at `root` holds (read, as a run reads them)."""
    return len(read_cifar10(root, download=False).x_train)


def read_cifar10(
    root: str | Path,
    download: bool = True,
    limit: int | None = None,
    strict: bool = False,
    option: str = "data.root=DIR",
) -> Cifar10:
    """The training and test sets, optionally only the first `limit` images of each; `strict`: a
    DataError where the training set has fewer (a run's data.limit; evaluation caps with it).
    `option`: what the errors name as pointing at the data."""
    folder = ensure_cifar10(root, download, option)
    missing = [name for name in [*TRAIN_FILES, TEST_FILE] if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}: an incomplete copy of CIFAR-10")
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    x_train, y_train = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    x_test, y_test = read_batch(folder / TEST_FILE)
    if not len(x_test):  # a run would finish "done" without a test error
        raise DataError(f"{folder / TEST_FILE} holds no images: a run needs a test set")
    if strict:
        check_limit(limit, len(x_train), folder)
    if limit is not None:
        x_train, y_train, x_test, y_test = (t[:limit] for t in (x_train, y_train, x_test, y_test))
    return Cifar10(x_train, y_train, x_test, y_test)


def downsample(x: Tensor, resolution: int) -> Tensor:
    """uint8 images (N, 3, 32, 32) at `resolution` x `resolution`, each pixel the rounded mean of
    the pixels it covers (area interpolation), still uint8; unchanged at 32."""
    if resolution == x.shape[-1]:
        return x
    small = F.interpolate(x.float(), size=(resolution, resolution), mode="area")
    return small.round_().to(torch.uint8)


def class_indices(classes: Sequence[str | int] | None, key: str = "data.classes") -> list[int]:
    """The CIFAR-10 labels of `classes` (names or labels 0-9), in the order given; all ten for
    None. A run on a subset relabels them 0..k-1 in this order. Errors name the option `key`."""
    if classes is None:
        return list(range(len(CLASSES)))
    valid = f"valid: {', '.join(CLASSES)} (or their labels 0-9)"
    if isinstance(classes, str | int) or not classes:
        raise OptionError(f"{key}={classes!r}: give a non-empty list of classes; {valid}")
    labels = []
    for c in classes:
        label = CLASSES.index(c) if c in CLASSES else c
        if type(label) is not int or label not in range(len(CLASSES)):  # bool is an int too
            raise OptionError(f"{key}: unknown class {c!r}; {valid}")
        labels.append(label)
    if len(set(labels)) < len(labels):
        raise OptionError(f"{key}={list(classes)} names a class twice")
    return labels


def select_classes(data: Cifar10, labels: Sequence[int]) -> Cifar10:
    """Only the images of `labels`, relabelled 0..k-1 in that order."""
    new = torch.full((len(CLASSES),), -1, dtype=torch.int64)
    new[list(labels)] = torch.arange(len(labels))

    def keep(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        y = new[y]
        return x[y >= 0], y[y >= 0]

    return Cifar10(*keep(data.x_train, data.y_train), *keep(data.x_test, data.y_test))


def describe_test_set(folder: Path, images: int) -> dict[str, object]:
    """What a run's test errors were measured on: the image count, the test_batch file's MD5 and
    whether that is the official test set (the one the paper's test errors come from)."""
    md5 = hashlib.md5((folder / TEST_FILE).read_bytes()).hexdigest()
    official = md5 == OFFICIAL_TEST_MD5 and images == OFFICIAL_TEST_IMAGES
    return {"test_images": images, "test_md5": md5, "test_official": official}


def random_crop_flip(x: Tensor, pad: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad by `pad`, then a random crop of the original size and a random horizontal flip,
    drawn independently per image (from `generator`), as one gather over the whole batch."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    draw = {"device": x.device, "generator": generator}
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b, 1, 1, 1), **draw)
    rows = dy + torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = dx + torch.arange(w, device=x.device).view(1, 1, 1, w)
    flip = torch.rand(b, 1, 1, 1, **draw) < 0.5
    cols = torch.where(flip, cols.flip(-1), cols)  # reading columns backwards is the flip
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]


class DeviceBatches:
    """Mini-batches sliced from tensors that already live on the training device, in an order
    drawn from `generator` each epoch (shuffle) or in order.

    Resumable: `state_dict` is the generator's state before this epoch's permutation and the
    batches trained on so far (`trained`, counted by whoever trains on them: Lightning fetches one
    batch ahead, so the batches handed out are one too many); Lightning saves it in checkpoints
    and `load_state_dict` makes the next epoch this one again, from the first batch not trained
    (or, saved after its last batch, the epoch after it).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        generator: torch.Generator | None = None,
    ):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        n = len(x)
        self.batches = n // batch_size if drop_last else -(-n // batch_size)
        self.generator = generator
        self.epoch_state: Tensor | None = None  # the generator before this epoch's permutation
        self.trained = 0  # batches of this epoch trained on
        self._resume_at = 0

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        n, bs = len(self.x), self.batch_size
        if self._resume_at >= self.batches:  # saved after the epoch's last batch: the next one
            # An empty epoch here would be one Lightning counts: every later epoch, and every
            # evaluation, one ahead of its step (measured: 18, 38, 58 instead of 20, 40, 60).
            if self.shuffle and self.epoch_state is not None:
                self.generator.set_state(self.epoch_state)
                torch.randperm(n, device=self.x.device, generator=self.generator)  # drawn past
            self._resume_at = 0
        order = None
        if self.shuffle:
            if self._resume_at and self.epoch_state is not None:
                self.generator.set_state(self.epoch_state)
            elif self.generator is not None:
                self.epoch_state = self.generator.get_state()
            order = torch.randperm(n, device=self.x.device, generator=self.generator)
        start, self._resume_at, self.trained = self._resume_at, 0, self._resume_at
        for i in range(start, self.batches):
            idx = order[i * bs : (i + 1) * bs] if order is not None else slice(i * bs, (i + 1) * bs)
            yield self.x[idx], self.y[idx]

    def state_dict(self) -> dict:
        return {"epoch_state": self.epoch_state, "trained": self.trained}

    def load_state_dict(self, state: dict) -> None:
        self.epoch_state, self._resume_at = state["epoch_state"], state["trained"]


class CIFAR10DataModule(pl.LightningDataModule):
    """CIFAR-10 on the training device; crop+flip+normalise happen there after transfer."""

    limit_is_required = True  # a run's data.limit: that many training images, or an error
    root_option = "data.root=DIR"  # what its errors name as pointing at the data

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        limit: int | None = None,
        val_split: int = 0,
        pad: int = 4,
        resolution: int = 32,
        normalize: str = "per_channel",
        mean: tuple[float, float, float] = (125.307, 122.950, 113.865),
        std: tuple[float, float, float] = (62.993, 62.089, 66.705),
        classes: Sequence[str | int] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise OptionError(f"data.normalize={normalize!r}: choose one of {NORMALIZATIONS}")
        check_count("data.limit", limit, minimum=1, none="null for all images")
        check_count("data.batch_size", batch_size, minimum=1)
        check_count("data.eval_batch_size", eval_batch_size, minimum=1)
        check_count("data.val_split", val_split, minimum=0)
        check_count("data.pad", pad, minimum=0)
        check_count("data.resolution", resolution, minimum=1)
        if resolution > 32:
            raise OptionError(f"data.resolution={resolution}: at most 32, CIFAR-10's own size")
        root = str(Path(root).expanduser())  # once, for reading and downloading alike
        self.classes = None if classes is None else class_indices(classes)  # fails before reading
        self.root, self.download, self.limit, self.val_split = root, download, limit, val_split
        self.batch_size, self.eval_batch_size, self.pad = batch_size, eval_batch_size, pad
        self.resolution = resolution
        self.normalize = normalize
        # x -> (x - shift) / scale; per_pixel_mean replaces both once the training images are read
        self.shift = torch.tensor(mean).view(1, 3, 1, 1)
        self.scale = torch.tensor(std).view(1, 3, 1, 1)
        self.data: Cifar10 | None = None
        self.test_set: dict[str, object] = {}  # describe_test_set's, once set up
        # The run's own random streams, seeded from its seed, one for the order of the training
        # images and one for their crops and flips: a run's data never depends on anything else
        # drawn from torch's global generator, and a checkpoint can hold where both were.
        self.seed = seed
        self.order: torch.Generator | None = None
        self.augment: torch.Generator | None = None
        self._augment_state: Tensor | None = None  # from a checkpoint, until training starts
        self._train: DeviceBatches | None = None

    def prepare_data(self) -> None:
        ensure_cifar10(self.root, self.download, self.root_option)

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        # training's data.limit must be there; an evaluation (diagnostics) caps the test set with it
        strict = self.limit_is_required and stage not in ("validate", "test", "predict")
        data = read_cifar10(self.root, self.download, self.limit, strict, self.root_option)
        if self.classes is not None:  # after data.limit: a subset of the first `limit` images
            data = select_classes(data, self.classes)
        x_train, x_test = (downsample(x, self.resolution) for x in (data.x_train, data.x_test))
        data = data._replace(x_train=x_train, x_test=x_test)
        if not len(data.x_train):
            subset = f" of data.classes={list(self.classes)}" if self.classes is not None else ""
            raise DataError(f"{self.root}: no training images{subset} to train on")
        if self.val_split >= len(data.x_train):
            raise OptionError(
                f"data.val_split={self.val_split} leaves no training images "
                f"(there are {len(data.x_train)})"
            )
        self.data = data
        self.test_set = describe_test_set(Path(self.root) / FOLDER, len(data.x_test))
        if self.normalize == "per_pixel_mean":  # the paper's: the mean image of the training set
            self.shift = self._split(train=True)[0].double().mean(0, keepdim=True).float()
            self.scale = torch.tensor(255.0)  # pixels on a 0-1 scale

    @property
    def class_count(self) -> int:
        """How many classes the run trains on (data.classes, or all ten): its chance-level error,
        100 (1 - 1 / this)%, is what a net that learned nothing gets (the verdict's ceiling)."""
        return len(CLASSES) if self.classes is None else len(self.classes)

    @property
    def train_images(self) -> int:
        """How many images training draws from (after data.limit, classes and val_split)."""
        return len(self.data.x_train) - self.val_split

    @property
    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer else torch.device("cpu")

    def _split(self, train: bool) -> tuple[Tensor, Tensor]:
        """Training images, or the held-out last `val_split` of them (the paper's 45k/5k)."""
        cut = len(self.data.x_train) - self.val_split
        part = slice(0, cut) if train else slice(cut, None)
        return self.data.x_train[part], self.data.y_train[part]

    def _batches(self, x: Tensor, y: Tensor, train: bool) -> DeviceBatches:
        x, y, dev = x.to(self._device), y.to(self._device), self._device
        self.shift, self.scale = self.shift.to(dev), self.scale.to(dev)
        size = self.batch_size if train else self.eval_batch_size
        # Dropping the ragged last training batch keeps every step's shape identical.
        drop_last = train and len(x) >= size
        return DeviceBatches(x, y, size, train, drop_last, self.order if train else None)

    def _generators(self) -> None:
        """The order and augmentation streams, on the training device (where the draws run)."""
        dev = self._device
        if self.order is None or self.order.device != dev:
            self.order = torch.Generator(dev).manual_seed(self.seed)
            self.augment = torch.Generator(dev).manual_seed(self.seed + AUGMENT_STREAM)
        if self._augment_state is not None:
            self.augment.set_state(self._augment_state)
            self._augment_state = None

    def train_dataloader(self) -> DeviceBatches:
        self._generators()
        self._train = self._batches(*self._split(train=True), train=True)
        return self._train

    def state_dict(self) -> dict:
        """Where the augmentation stream is (Lightning saves it in checkpoints; the order's
        position is the training loader's own state)."""
        return {} if self.augment is None else {"augment": self.augment.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._augment_state = state.get("augment")

    def val_dataloader(self) -> list[DeviceBatches]:
        """Dataloader 0 is the test set (logged as test_*), 1 the validation split if any."""
        loaders = [self._batches(self.data.x_test, self.data.y_test, train=False)]
        if self.val_split:
            loaders.append(self._batches(*self._split(train=False), train=False))
        return loaders

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int):
        x, y = batch
        if self.trainer is not None and self.trainer.training:
            x = random_crop_flip(x, self.pad, self.augment)
            self._train.trained += 1  # this batch is about to be trained on
        return (x.float() - self.shift) / self.scale, y

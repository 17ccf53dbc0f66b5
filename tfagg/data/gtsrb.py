"""The German Traffic Sign Recognition Benchmark (GTSRB, Stallkamp et al. 2012) at 128x128.

The paper (Mahlau & Nolde 2022, Sec. 5) explains a ResNet18 trained on GTSRB, "43 classes with a
resolution of 128x128 pixels", averaging over 2000 images of the validation set. GTSRB has no
separate validation set; tfagg uses the official *final test set* (12,630 images) as
``split="test"`` (the default) and the training set (39,209 images) as ``split="train"``.

Input: the three official archives, read in place with :mod:`zipfile`, or their extracted folders,
in a directory ``root``::

    root/GTSRB_Final_Training_Images.zip   GTSRB/Final_Training/Images/000NN/*.ppm + GT-000NN.csv
    root/GTSRB_Final_Test_Images.zip       GTSRB/Final_Test/Images/*.ppm (+ GT-final_test.test.csv)
    root/GTSRB_Final_Test_GT.zip           GT-final_test.csv (the test labels)

Extracted copies may live at ``root/GTSRB/...`` or ``root/Final_*/...``; ``GT-final_test.csv`` at
``root``, ``root/GTSRB``, ``root/GTSRB/Final_Test`` or next to the test images. Each component is
looked up independently (zip first), and ``ids`` are always the paths inside the official
archives, so a zip and its extracted copy give identical :class:`ImageSet` s.

Preprocessing (the paper is silent): the whole image is resized to 128x128 with Pillow's bilinear
filter (torchvision's ``Resize((128, 128))``), no crop -- GTSRB images are 15-250 px and include a
margin of ~10 % around the sign. ``crop_to_roi=True`` crops to the annotated sign box first.
The annotated box ``Roi.X1, Roi.Y1, Roi.X2, Roi.Y2`` is read as inclusive pixel indices (the
official images have a >= 5 px margin on each side, e.g. width 29 with X1=5, X2=24), i.e. the
continuous region ``[X1, X2 + 1) x [Y1, Y2 + 1)``; ``masks`` marks the output pixels whose
centres fall inside it -- ground-truth evidence for the sign.
"""
from __future__ import annotations

import csv
import io
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfagg.data._image_io import decode_rgb, parallel_map, resize_exact
from tfagg.data.base import ImageSet, choose_indices
from tfagg.data.gtsrb_classes import GTSRB_CLASS_NAMES, NUM_CLASSES
from tfagg.validation import check_positive_int


TRAIN_ZIP = "GTSRB_Final_Training_Images.zip"
TEST_ZIP = "GTSRB_Final_Test_Images.zip"
TEST_GT_ZIP = "GTSRB_Final_Test_GT.zip"
TRAIN_IMAGES = "GTSRB/Final_Training/Images"  # path inside TRAIN_ZIP
TEST_IMAGES = "GTSRB/Final_Test/Images"  # path inside TEST_ZIP
TEST_GT_CSV = "GT-final_test.csv"
CSV_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")
# Width/Height are not needed: the decoded image gives the size.
REQUIRED_COLUMNS = ("Filename", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")

_LAYOUT_HELP = (
    "Expected in `root`: the official archives "
    f"'{TRAIN_ZIP}' (split='train'), '{TEST_ZIP}' + '{TEST_GT_ZIP}' (split='test'), "
    f"or their extracted folders '{TRAIN_IMAGES}/000NN/' (with GT-000NN.csv), "
    f"'{TEST_IMAGES}/' and '{TEST_GT_CSV}'."
)


@dataclass(frozen=True)
class GtsrbRecord:
    """One annotated image: ``path`` inside the official archive, ROI (inclusive), class."""

    path: str
    roi: tuple  # (x1, y1, x2, y2), inclusive pixel indices
    label: int


class _Store:
    """Read-only access to files by archive-relative path, from a zip or an extracted folder.

    ``prefix`` maps archive paths to the store: a zip uses them as they are, a folder may hold
    the ``Images`` directory somewhere else (``root/Final_Test/Images`` ...).
    """

    def __init__(self, zip_path: Path | None = None, folder: Path | None = None, archive_prefix: str = ""):
        self.zip_path, self.folder, self.archive_prefix = zip_path, folder, archive_prefix
        self._zip = None
        self._lock = threading.Lock()  # ZipFile shares one file handle between readers
        if zip_path is not None:
            try:
                self._zip = zipfile.ZipFile(zip_path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ValueError(f"{str(zip_path)!r} is not a readable zip archive: {exc}") from exc
            self._names = set(self._zip.namelist())

    def __repr__(self):
        return str(self.zip_path or self.folder)

    def _local(self, archive_path: str) -> Path:
        rel = archive_path[len(self.archive_prefix):].lstrip("/") if archive_path.startswith(self.archive_prefix) else archive_path
        return self.folder / rel

    def exists(self, archive_path: str) -> bool:
        if self._zip is not None:
            return archive_path in self._names
        return self._local(archive_path).is_file()

    def read(self, archive_path: str) -> bytes:
        if self._zip is not None:
            with self._lock:
                return self._zip.read(archive_path)
        return self._local(archive_path).read_bytes()

    def subdirs(self, archive_dir: str) -> list:
        """Names of the direct sub-folders of ``archive_dir``, sorted."""
        if self._zip is not None:
            prefix = archive_dir.rstrip("/") + "/"
            found = {n[len(prefix):].split("/", 1)[0] for n in self._names if n.startswith(prefix) and "/" in n[len(prefix):]}
            return sorted(found)
        local = self._local(archive_dir)
        return sorted(p.name for p in local.iterdir() if p.is_dir()) if local.is_dir() else []


def _check_root(root) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"GTSRB `root` {str(root)!r} does not exist. {_LAYOUT_HELP}")
    if not root.is_dir():
        raise ValueError(f"GTSRB `root` must be the folder that holds the archives, got the file {str(root)!r}. {_LAYOUT_HELP}")
    return root


def _images_store(root: Path, zip_name: str, archive_dir: str) -> _Store | None:
    """The store holding ``archive_dir`` (``GTSRB/Final_*/Images``): zip, or an extracted folder."""
    if (root / zip_name).is_file():
        return _Store(zip_path=root / zip_name)
    tail = archive_dir.split("/", 1)[1]  # 'Final_Test/Images'
    for base in (root / "GTSRB", root):
        if (base / tail).is_dir():
            return _Store(folder=base, archive_prefix="GTSRB")
    return None


def _read_csv(data: bytes, where: str, required) -> list:
    """Rows of a semicolon-separated GTSRB annotation file as dicts; checks the header."""
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"annotation file {where} lacks column(s) {missing}; expected a ';'-separated header {list(required)}, got {header}")
    return [row for row in reader if row.get("Filename")]


def _as_int(row, column, where, lineno) -> int:
    try:
        return int(str(row[column]).strip())
    except (TypeError, ValueError):
        raise ValueError(f"annotation file {where} line {lineno}: column {column!r} must be an integer, got {row[column]!r}") from None


def _records_from_rows(rows, image_dir: str, where: str) -> list:
    records = []
    for lineno, row in enumerate(rows, start=2):
        roi = tuple(_as_int(row, c, where, lineno) for c in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
        label = _as_int(row, "ClassId", where, lineno)
        if not 0 <= label < NUM_CLASSES:
            raise ValueError(f"annotation file {where} line {lineno}: ClassId {label} is outside [0, {NUM_CLASSES - 1}]")
        if roi[2] < roi[0] or roi[3] < roi[1]:
            raise ValueError(f"annotation file {where} line {lineno}: empty ROI {roi} (need X2 >= X1, Y2 >= Y1)")
        records.append(GtsrbRecord(path=f"{image_dir}/{row['Filename'].strip()}", roi=roi, label=label))
    return records


def _train_records(root: Path):
    store = _images_store(root, TRAIN_ZIP, TRAIN_IMAGES)
    if store is None:
        raise FileNotFoundError(f"no GTSRB training set in {str(root)!r}. {_LAYOUT_HELP}")
    classes = [d for d in store.subdirs(TRAIN_IMAGES) if d.isdigit()]
    if not classes:
        raise ValueError(f"{store!r} has no class folders '{TRAIN_IMAGES}/000NN/'. {_LAYOUT_HELP}")
    records = []
    for cls in classes:
        csv_path = f"{TRAIN_IMAGES}/{cls}/GT-{cls}.csv"
        if not store.exists(csv_path):
            raise FileNotFoundError(f"{store!r} lacks the annotation file '{csv_path}' of class folder {cls}. {_LAYOUT_HELP}")
        where = f"'{csv_path}' in {store!r}"
        records += _records_from_rows(_read_csv(store.read(csv_path), where, REQUIRED_COLUMNS), f"{TRAIN_IMAGES}/{cls}", where)
    return records, store


def _test_labels_csv(root: Path) -> tuple:
    """Bytes and description of GT-final_test.csv (from its zip or an extracted copy)."""
    if (root / TEST_GT_ZIP).is_file():
        gt = _Store(zip_path=root / TEST_GT_ZIP)
        member = next((n for n in sorted(gt._names) if n.rsplit("/", 1)[-1] == TEST_GT_CSV), None)
        if member is None:
            raise ValueError(f"{str(root / TEST_GT_ZIP)!r} does not contain '{TEST_GT_CSV}'")
        return gt.read(member), f"'{member}' in {str(root / TEST_GT_ZIP)!r}"
    for folder in (root, root / "GTSRB", root / "GTSRB" / "Final_Test", root / "Final_Test",
                   root / "GTSRB" / "Final_Test" / "Images", root / "Final_Test" / "Images"):
        if (folder / TEST_GT_CSV).is_file():
            return (folder / TEST_GT_CSV).read_bytes(), repr(str(folder / TEST_GT_CSV))
    raise FileNotFoundError(
        f"no GTSRB test labels in {str(root)!r}: need '{TEST_GT_ZIP}' or its extracted '{TEST_GT_CSV}' "
        f"(the test images archive only has GT-final_test.test.csv, without ClassId). {_LAYOUT_HELP}"
    )


def _test_records(root: Path):
    store = _images_store(root, TEST_ZIP, TEST_IMAGES)
    if store is None:
        raise FileNotFoundError(f"no GTSRB test images in {str(root)!r}. {_LAYOUT_HELP}")
    data, where = _test_labels_csv(root)
    records = _records_from_rows(_read_csv(data, where, REQUIRED_COLUMNS), TEST_IMAGES, where)
    absent = [r.path for r in records[:50] if not store.exists(r.path)]
    if absent:
        raise FileNotFoundError(f"test images listed in {where} are missing from {store!r}, e.g. {absent[:3]}. {_LAYOUT_HELP}")
    return records, store


def gtsrb_records(root, split: str = "test"):
    """All annotated images of a split, sorted by path, and the store they are read from."""
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test' (the official final test set); got {split!r}")
    root = _check_root(root)
    records, store = _train_records(root) if split == "train" else _test_records(root)
    if not records:
        raise ValueError(f"the GTSRB {split} annotations in {store!r} list no images")
    return sorted(records, key=lambda r: r.path), store


def roi_mask(roi, original_size, image_size: int, crop_to_roi: bool = False) -> np.ndarray:
    """Boolean ``(image_size, image_size)`` mask of the ROI box in the resized image.

    Output pixel ``j`` has its centre at ``(j + 0.5) * W / image_size`` in original pixel-edge
    coordinates; it is inside when that centre lies in ``[X1, X2 + 1)`` (likewise for rows).
    With ``crop_to_roi`` the image *is* the box, so the mask is all True.
    """
    if crop_to_roi:
        return np.ones((image_size, image_size), dtype=bool)
    width, height = original_size
    x1, y1, x2, y2 = roi
    centres = np.arange(image_size, dtype=np.float64) + 0.5
    cx, cy = centres * (width / image_size), centres * (height / image_size)
    inside_x = (cx >= x1) & (cx < x2 + 1)
    inside_y = (cy >= y1) & (cy < y2 + 1)
    return inside_y[:, None] & inside_x[None, :]


def _crop_box(roi, original_size):
    """ROI as a PIL crop box (right/bottom exclusive), clipped to the image."""
    width, height = original_size
    x1, y1, x2, y2 = roi
    left, top = min(max(x1, 0), width - 1), min(max(y1, 0), height - 1)
    return left, top, max(min(x2 + 1, width), left + 1), max(min(y2 + 1, height), top + 1)


def _load_one(store: _Store, record: GtsrbRecord, image_size: int, crop_to_roi: bool):
    image = decode_rgb(store.read(record.path), record.path)
    box = _crop_box(record.roi, image.size) if crop_to_roi else None
    pixels = resize_exact(image, image_size, box)
    return pixels, roi_mask(record.roi, image.size, image_size, crop_to_roi)


def _check_args(n, seed, image_size):
    if n is not None:
        check_positive_int(n, "n")
    check_positive_int(seed, "seed", minimum=0)
    return check_positive_int(image_size, "image_size", minimum=8)


def load_gtsrb(
    root,
    split: str = "test",
    n: int | None = 2000,
    seed: int = 0,
    image_size: int = 128,
    crop_to_roi: bool = False,
) -> ImageSet:
    """Load a seeded subset of GTSRB as an :class:`~tfagg.data.base.ImageSet`.

    Parameters
    ----------
    root : path
        Folder holding the official zips or their extracted folders (see module docstring).
    split : {"test", "train"}
        ``"test"``: the final test set with labels from ``GT-final_test.csv`` (the paper's
        evaluation images); ``"train"``: the training set.
    n : int or None
        Number of images (paper: 2000); ``None`` takes all. The whole training split as float32
        is 7.7 GB at 128 px -- to train, stream it with :func:`gtsrb_tf_dataset`.
    seed : int
        Seed of :func:`tfagg.data.base.choose_indices` over the images sorted by path.
    image_size : int
        Output side (paper: 128).
    crop_to_roi : bool
        Crop to the annotated sign box before resizing.

    Returns
    -------
    ImageSet
        ``images`` (n, S, S, 3) float32 in [0, 1]; ``labels`` ClassId; ``ids`` paths inside the
        official archives (e.g. ``GTSRB/Final_Test/Images/00042.ppm``); ``masks`` the ROI box in
        the output image; ``class_names`` :data:`GTSRB_CLASS_NAMES`.
    """
    image_size = _check_args(n, seed, image_size)
    records, store = gtsrb_records(root, split)
    chosen = [records[i] for i in choose_indices(len(records), n, seed)]
    loaded = parallel_map(lambda r: _load_one(store, r, image_size, bool(crop_to_roi)), chosen)
    return ImageSet(
        images=np.stack([img for img, _ in loaded]),
        labels=np.array([r.label for r in chosen], dtype=np.int32),
        ids=[r.path for r in chosen],
        masks=np.stack([mask for _, mask in loaded]),
        class_names=list(GTSRB_CLASS_NAMES),
        name="gtsrb",
        meta={
            "split": split,
            "source": str(store),
            "seed": seed,
            "available": len(records),
            "crop_to_roi": bool(crop_to_roi),
            "preprocessing": f"PIL bilinear resize to {image_size}x{image_size}" + (" of the ROI crop" if crop_to_roi else ""),
        },
    )


def gtsrb_tf_dataset(
    root,
    split: str = "train",
    image_size: int = 128,
    crop_to_roi: bool = False,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
):
    """A ``tf.data.Dataset`` of ``(images, labels)`` batches over a whole GTSRB split, for training.

    Images are decoded and resized lazily (the same preprocessing as :func:`load_gtsrb`), so memory
    stays small. With ``shuffle`` the order is reshuffled every epoch from ``seed``
    (deterministic). Batches are ``float32 (B, S, S, 3)`` in [0, 1] and ``int32 (B,)``; the
    dataset's ``.cardinality()`` is known.
    """
    import tensorflow as tf

    image_size = _check_args(None, seed, image_size)
    batch_size = check_positive_int(batch_size, "batch_size")
    records, store = gtsrb_records(root, split)
    labels = tf.constant([r.label for r in records], dtype=tf.int32)

    def load(index):
        return _load_one(store, records[int(index)], image_size, bool(crop_to_roi))[0]

    def fetch(index):
        image = tf.numpy_function(load, [index], tf.float32, stateful=False)
        image.set_shape((image_size, image_size, 3))
        return image, tf.gather(labels, index)

    ds = tf.data.Dataset.range(len(records))
    if shuffle:
        ds = ds.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

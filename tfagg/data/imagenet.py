"""ImageNet (ILSVRC 2012) validation images for the paper's ImageNet experiments.

The paper (Mahlau & Nolde 2022, Sec. 5) explains "2000 sample images from the respective
validation sets" with a ResNet18 trained on ImageNet at 224x224. The paper does not name its
weights or preprocessing; tfagg follows torchvision: labels are indices into the *sorted* list of
the 1000 WordNet ids (``n01440764`` = 0, ...), which is the order of torchvision's ResNet18
logits, and images go through torchvision's evaluation transform (``Resize(256)``,
``CenterCrop(224)``, ``ToTensor()``; see :mod:`tfagg.data._image_io`). Normalisation with the
ImageNet mean/std happens inside the model, so images are returned in [0, 1].

Two entry points:

:func:`load_imagenet_val`
    Reads files directly: the official ``ILSVRC2012_img_val.tar`` (or a folder holding it),
    a flat folder of ``ILSVRC2012_val_XXXXXXXX.JPEG`` files, or an ImageFolder tree
    ``<root>/<wnid>/*.JPEG``.
:func:`load_imagenet_val_tfds`
    Goes through tensorflow-datasets' ``imagenet2012`` builder with a ``manual_dir`` that holds
    ``ILSVRC2012_img_val.tar``. Builds offline (no download is ever attempted) and only the
    validation split; costs a one-off conversion to TFRecords (a second 6.4 GB copy).

Both return the same :class:`~tfagg.data.base.ImageSet` for the same tar, seed and ``n``.

Label sources
-------------
The WordNet-id list and the 50,000 validation labels are read at run time from the files that
tensorflow-datasets ships (``datasets/imagenet2012/labels.txt`` and ``validation_labels.txt``;
line ``i`` of the latter is the wnid of ``ILSVRC2012_val_{i:08d}.JPEG``). tfagg uses them for files
with canonical validation names when no label file is given. A label file overrides them; see
:func:`read_label_file` for the accepted formats.
"""
from __future__ import annotations

import csv
import functools
import importlib.util
import re
import tarfile
from pathlib import Path

import numpy as np

from tfagg.data._image_io import decode_rgb, parallel_map, torchvision_eval_transform
from tfagg.data.base import ImageSet, choose_indices
from tfagg.validation import check_positive_int

VAL_TAR_NAME = "ILSVRC2012_img_val.tar"
NUM_CLASSES = 1000
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
_CANONICAL_STEM = re.compile(r"^ILSVRC2012_val_(\d{8})$")
_WNID = re.compile(r"^n\d{8}$")
_CHUNK = 256  # images read and transformed per step: bounds the encoded bytes held in memory

_LAYOUT_HELP = (
    "Expected one of:\n"
    f"  * the official validation archive '{VAL_TAR_NAME}' (or a folder that contains it);\n"
    "  * a flat folder of 'ILSVRC2012_val_00000001.JPEG', ... files (labels from tensorflow-"
    "datasets' validation labels, or from `label_file`);\n"
    "  * an ImageFolder tree '<root>/<wnid>/<image>.JPEG' with wnid folders such as 'n01440764'."
)

_TFDS_WNIDS = ("datasets/imagenet2012/labels.txt", "image_classification/imagenet2012_labels.txt")
_TFDS_VAL_LABELS = (
    "datasets/imagenet2012/validation_labels.txt",
    "image_classification/imagenet2012_validation_labels.txt",
)


# --------------------------------------------------------------------------- label tables


def _tfds_package_file(candidates) -> Path:
    """Path of a data file inside the installed tensorflow_datasets package (not imported)."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "tensorflow-datasets is needed for the ImageNet class list (it ships the 1000 "
            "WordNet ids and the validation labels); install it with `pip install tensorflow-datasets`"
        )
    for root in spec.submodule_search_locations:
        for rel in candidates:
            path = Path(root) / rel
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"none of {list(candidates)} found in the installed tensorflow_datasets package; "
        "this tensorflow-datasets version does not ship the ImageNet label files"
    )


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple:
    """The 1000 ImageNet WordNet ids in torchvision's class order (sorted; ``n01440764`` = 0)."""
    wnids = _tfds_package_file(_TFDS_WNIDS).read_text().split()
    if len(wnids) != NUM_CLASSES or len(set(wnids)) != NUM_CLASSES:
        raise ValueError(f"the tensorflow-datasets wnid list has {len(wnids)} entries, expected 1000 unique ones")
    # torchvision's ImageFolder-derived order is the sorted order; tfds' file is sorted too, and
    # sorting here keeps the guarantee even if a future file is not.
    return tuple(sorted(wnids))


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict:
    return {w: i for i, w in enumerate(imagenet_wnids())}


@functools.lru_cache(maxsize=1)
def imagenet_validation_wnids() -> tuple:
    """Ground-truth wnid of each validation image: entry ``i`` is ``ILSVRC2012_val_{i+1:08d}``."""
    labels = _tfds_package_file(_TFDS_VAL_LABELS).read_text().split()
    if len(labels) != 50000:
        raise ValueError(f"the tensorflow-datasets validation label file has {len(labels)} lines, expected 50000")
    return tuple(labels)


def canonical_validation_label(file_name: str):
    """Torchvision class index of an official validation file name, or None if not canonical."""
    match = _CANONICAL_STEM.match(_stem(file_name))
    if match is None:
        return None
    number = int(match.group(1))
    if not 1 <= number <= 50000:
        return None
    return _wnid_index()[imagenet_validation_wnids()[number - 1]]


def _stem(file_name: str) -> str:
    """``'a/b/ILSVRC2012_val_00000001.JPEG'`` -> ``'ILSVRC2012_val_00000001'``."""
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


_UNKNOWN_WNID = object()


def _parse_label_token(token: str):
    """A wnid or an integer index -> class index; ``_UNKNOWN_WNID`` for a wnid outside the 1000;
    None if the token is neither."""
    if _WNID.match(token):
        return _wnid_index().get(token, _UNKNOWN_WNID)
    try:
        return int(token)
    except ValueError:
        return None


def read_label_file(path) -> dict:
    """Read a validation ground-truth file into ``{file stem: torchvision class index}``.

    Accepted formats
    ----------------
    * Text, one image per line: ``<file name> <label>`` separated by whitespace or a comma,
      where ``<label>`` is a wnid (``n01751748``) or an integer class index. **Integer indices
      must be in torchvision order** (position of the wnid in the sorted wnid list); the devkit's
      ``ILSVRC2012_validation_ground_truth.txt`` uses a different (ILSVRC2012_ID) numbering and
      is rejected. A header line whose label is neither a wnid nor an integer is skipped.
    * Kaggle's ``LOC_val_solution.csv``: header ``ImageId,PredictionString``; the first token of
      ``PredictionString`` is the wnid.

    File names are matched by stem, so ``ILSVRC2012_val_00000001`` and
    ``ILSVRC2012_val_00000001.JPEG`` refer to the same image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`label_file` {str(path)!r} does not exist")
    text = path.read_text()
    lines = text.splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if first.lower().replace(" ", "").startswith("imageid,predictionstring"):
        rows = [(r.get("ImageId", ""), (r.get("PredictionString") or "").split()[:1]) for r in csv.DictReader(lines)]
        pairs = [(lineno + 2, image_id, tok[0] if tok else "") for lineno, (image_id, tok) in enumerate(rows)]
        header_possible = False  # DictReader consumed the header
    else:
        header_possible = True
        pairs = []
        for lineno, line in enumerate(lines, start=1):
            fields = [f for f in re.split(r"[\s,;]+", line.strip()) if f]
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) == 1:
                raise ValueError(
                    f"`label_file` {str(path)!r} line {lineno} has a single field {fields[0]!r}; expected "
                    "'<file name> <wnid or torchvision index>' per line (or Kaggle's LOC_val_solution.csv). "
                    "The devkit's ILSVRC2012_validation_ground_truth.txt (one ILSVRC2012_ID per line) is not "
                    "in torchvision order; for canonically named files pass label_file=None instead"
                )
            pairs.append((lineno, fields[0], fields[1]))

    labels, unknown, out_of_range = {}, [], []
    for i, (lineno, name, token) in enumerate(pairs):
        value = _parse_label_token(token)
        if value is None:
            if i == 0 and header_possible:
                continue  # a header such as 'filename label'
            raise ValueError(f"`label_file` {str(path)!r} line {lineno}: label {token!r} is neither a wnid nor an integer")
        if value is _UNKNOWN_WNID:
            unknown.append(token)
            continue
        if not 0 <= value < NUM_CLASSES:
            out_of_range.append(token)
            continue
        key = _stem(name)
        if labels.get(key, value) != value:
            raise ValueError(f"`label_file` {str(path)!r} gives two different labels for {name!r}")
        labels[key] = value
    if unknown:
        raise ValueError(
            f"`label_file` {str(path)!r} has {len(unknown)} wnid(s) that are not ImageNet-1k classes, "
            f"e.g. {sorted(set(unknown))[:5]}"
        )
    if out_of_range:
        raise ValueError(
            f"`label_file` {str(path)!r} has {len(out_of_range)} integer label(s) outside [0, 999], "
            f"e.g. {out_of_range[:5]}"
        )
    if not labels:
        raise ValueError(f"`label_file` {str(path)!r} contains no labels")
    return labels


# --------------------------------------------------------------------------- sources


class _TarReader:
    """Reads members of an uncompressed tar; single-threaded by design (one shared file)."""

    def __init__(self, path: Path):
        try:
            self._tar = tarfile.open(path, mode="r:*")
        except (tarfile.TarError, OSError) as exc:
            raise ValueError(f"{str(path)!r} is not a readable tar archive: {exc}") from exc
        self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}

    def names(self):
        return list(self._members)

    def read(self, name: str) -> bytes:
        return self._tar.extractfile(self._members[name]).read()

    def close(self):
        self._tar.close()


class _DirReader:
    def __init__(self, root: Path):
        self._root = root

    def read(self, name: str) -> bytes:
        return (self._root / name).read_bytes()

    def close(self):
        pass


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _resolve_source(source):
    """-> (layout, reader, [(id, label or None)]) for the files under ``source``."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"ImageNet `source` {str(path)!r} does not exist. {_LAYOUT_HELP}")
    if path.is_dir() and (path / VAL_TAR_NAME).is_file():
        path = path / VAL_TAR_NAME
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ValueError(f"ImageNet `source` {str(path)!r} is a file but not a tar archive. {_LAYOUT_HELP}")
        reader = _TarReader(path)
        names = [n for n in reader.names() if _is_image(n)]
        if not names:
            reader.close()
            raise ValueError(f"the tar archive {str(path)!r} contains no JPEG images. {_LAYOUT_HELP}")
        return "tar", reader, [(n, None) for n in names]

    flat = sorted(p.name for p in path.iterdir() if p.is_file() and _is_image(p.name))
    if flat:
        return "flat", _DirReader(path), [(n, None) for n in flat]
    entries, strays = [], []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        images = sorted(p.name for p in sub.iterdir() if p.is_file() and _is_image(p.name))
        if not images:
            continue
        label = _wnid_index().get(sub.name)
        if label is None:
            strays.append(sub.name)
            continue
        entries += [(f"{sub.name}/{name}", label) for name in images]
    if strays:
        raise ValueError(
            f"ImageFolder tree {str(path)!r} has image folders that are not ImageNet-1k wnids: "
            f"{strays[:5]}. {_LAYOUT_HELP}"
        )
    if not entries:
        raise ValueError(f"no JPEG images found in {str(path)!r}. {_LAYOUT_HELP}")
    return "imagefolder", _DirReader(path), entries


def _attach_labels(entries, label_file, source):
    """Fill in the labels of a flat folder / tar listing."""
    if label_file is not None:
        table = read_label_file(label_file)
        missing = [name for name, _ in entries if _stem(name) not in table]
        if missing:
            raise ValueError(
                f"`label_file` {str(label_file)!r} has no label for {len(missing)} of the {len(entries)} "
                f"images in {str(source)!r}, e.g. {missing[:5]}"
            )
        return [(name, table[_stem(name)]) for name, _ in entries]
    labelled = [(name, canonical_validation_label(name)) for name, _ in entries]
    odd = [name for name, label in labelled if label is None]
    if odd:
        raise ValueError(
            f"{len(odd)} image(s) in {str(source)!r} do not have official validation names "
            f"('ILSVRC2012_val_00000001.JPEG' ... '_00050000.JPEG'), e.g. {odd[:5]}, so their labels are "
            "unknown; pass `label_file` ('<file> <wnid>' lines or LOC_val_solution.csv)"
        )
    return labelled


def _check_sizes(n, seed, image_size, resize_size):
    if n is not None:
        check_positive_int(n, "n")
    check_positive_int(seed, "seed", minimum=0)
    image_size = check_positive_int(image_size, "image_size")
    resize_size = check_positive_int(resize_size, "resize_size")
    if resize_size < image_size:
        raise ValueError(f"`resize_size` ({resize_size}) must be >= `image_size` ({image_size}): the crop is taken from the resized image")
    return image_size, resize_size


def _transform_encoded(encoded, ids, image_size, resize_size):
    def one(pair):
        data, name = pair
        return torchvision_eval_transform(decode_rgb(data, name), resize_size, image_size)

    return parallel_map(one, list(zip(encoded, ids)))


def _image_set(images, labels, ids, meta) -> ImageSet:
    return ImageSet(
        images=np.stack(images).astype(np.float32, copy=False),
        labels=np.asarray(labels, dtype=np.int32),
        ids=list(ids),
        class_names=list(imagenet_wnids()),
        name="imagenet",
        meta=meta,
    )


def load_imagenet_val(
    source,
    n: int | None = 2000,
    seed: int = 0,
    *,
    label_file=None,
    image_size: int = 224,
    resize_size: int = 256,
) -> ImageSet:
    """Load a seeded subset of ImageNet validation images, preprocessed like torchvision.

    Parameters
    ----------
    source : path
        ``ILSVRC2012_img_val.tar`` or a folder that holds it (read in place, no extraction); a flat
        folder of JPEGs; or an ImageFolder tree ``<source>/<wnid>/*.JPEG`` (labels from the folder
        names). The layout is detected in that order.
    n : int or None
        Number of images (paper: 2000). ``None`` or ``n >=`` available takes all.
    seed : int
        Seed of :func:`tfagg.data.base.choose_indices` over the images sorted by id.
    label_file : path, optional
        Ground truth for a flat folder or tar (formats: :func:`read_label_file`). Without it, files
        must carry official validation names, whose labels come from tensorflow-datasets.
    image_size, resize_size : int
        ``CenterCrop(image_size)`` after ``Resize(resize_size)``; 224 / 256 as in torchvision.

    Returns
    -------
    ImageSet
        ``images`` (n, image_size, image_size, 3) float32 in [0, 1]; ``labels`` torchvision class
        indices; ``ids`` file names (``<wnid>/<file>`` for an ImageFolder tree), ascending;
        ``class_names`` the sorted wnids.
    """
    image_size, resize_size = _check_sizes(n, seed, image_size, resize_size)
    layout, reader, entries = _resolve_source(source)
    try:
        if layout == "imagefolder":
            if label_file is not None:
                raise ValueError("`label_file` is not used with an ImageFolder tree (labels are the wnid folder names); pass label_file=None")
        else:
            entries = _attach_labels(entries, label_file, source)
        entries.sort(key=lambda e: e[0])
        chosen = [entries[i] for i in choose_indices(len(entries), n, seed)]
        images = []
        for start in range(0, len(chosen), _CHUNK):
            part = chosen[start : start + _CHUNK]
            # Reads stay sequential (a tar is one shared file); decoding runs on threads.
            encoded = [reader.read(name) for name, _ in part]
            images += _transform_encoded(encoded, [name for name, _ in part], image_size, resize_size)
    finally:
        reader.close()
    meta = {
        "split": "validation",
        "source": str(source),
        "layout": layout,
        "preprocessing": f"torchvision Resize({resize_size}) + CenterCrop({image_size}) + ToTensor (PIL bilinear)",
        "seed": seed,
        "available": len(entries),
    }
    return _image_set(images, [label for _, label in chosen], [name for name, _ in chosen], meta)


# --------------------------------------------------------------------------- tensorflow-datasets


def load_imagenet_val_tfds(
    manual_dir,
    data_dir=None,
    n: int | None = 2000,
    seed: int = 0,
    *,
    image_size: int = 224,
    resize_size: int = 256,
) -> ImageSet:
    """Like :func:`load_imagenet_val`, through tensorflow-datasets' ``imagenet2012`` builder.

    The builder prepares only the splits whose archives are present. To guarantee that only the
    validation split is built (the train tar, if also in ``manual_dir``, would take hours and
    ~150 GB), the builder is pointed at a staging folder under ``data_dir`` that contains just a
    symbolic link to ``manual_dir/ILSVRC2012_img_val.tar``. Downloads are impossible: the
    ``DownloadConfig`` carries the manual dir and ``try_download_gcs=False``.

    tensorflow-datasets assigns validation labels by zipping the *sorted* tar member names with its
    50,000-line label list, which is only right for the complete official tar. Every loaded image
    with an official name is therefore checked against the label of its file number; a mismatch
    (a partial or renamed tar) raises ``ValueError``.

    Parameters
    ----------
    manual_dir : path
        Folder that holds ``ILSVRC2012_img_val.tar``.
    data_dir : path, optional
        Where tensorflow-datasets writes the prepared TFRecords (default
        ``tfagg_home()/tensorflow_datasets``). Once prepared, they are reused as they are (the
        archive is not read again), so use one ``data_dir`` per archive.
    n, seed, image_size, resize_size
        As in :func:`load_imagenet_val`.
    """
    image_size, resize_size = _check_sizes(n, seed, image_size, resize_size)
    manual_dir = Path(manual_dir).expanduser()
    tar_path = manual_dir / VAL_TAR_NAME
    if not tar_path.is_file():
        raise FileNotFoundError(
            f"`manual_dir` must contain the official ImageNet validation archive: {str(tar_path)!r} not found "
            "(tensorflow-datasets' imagenet2012 layout: <manual_dir>/ILSVRC2012_img_val.tar)"
        )
    if data_dir is None:
        from tfagg.paths import tfagg_home

        data_dir = tfagg_home() / "tensorflow_datasets"
    data_dir = Path(data_dir).expanduser()

    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder("imagenet2012", data_dir=str(data_dir))
    if not builder.is_prepared():
        staging = data_dir / "tfagg_imagenet2012_manual"
        staging.mkdir(parents=True, exist_ok=True)
        link = staging / VAL_TAR_NAME
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(tar_path.resolve())
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=str(staging),
                try_download_gcs=False,
                download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
            )
        )
    if "validation" not in builder.info.splits:
        raise ValueError(
            f"the tensorflow-datasets copy in {str(data_dir)!r} has no validation split "
            f"(splits: {list(builder.info.splits)}); use a fresh `data_dir`"
        )

    def records():
        return builder.as_dataset(split="validation", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})

    # Pass 1: names only (the choice is made over the sorted names, like load_imagenet_val).
    names = sorted(x.decode() for x in records().map(lambda ex: ex["file_name"]).as_numpy_iterator())
    chosen = [names[i] for i in choose_indices(len(names), n, seed)]
    # Pass 2: encoded bytes of the chosen images only.
    wanted = tf.constant(chosen)
    selected = records().filter(lambda ex: tf.reduce_any(tf.equal(ex["file_name"], wanted)))
    found = {}
    for ex in selected.as_numpy_iterator():
        found[ex["file_name"].decode()] = (int(ex["label"]), ex["image"])

    labels, mismatched = [], []
    for name in chosen:
        label = found[name][0]
        expected = canonical_validation_label(name)
        if expected is not None and expected != label:
            mismatched.append(name)
        labels.append(label)
    if mismatched:
        raise ValueError(
            f"tensorflow-datasets labelled {len(mismatched)} image(s) differently from their official file "
            f"numbers, e.g. {mismatched[:3]}: its labels are only right for the complete {VAL_TAR_NAME}. "
            "Use load_imagenet_val() on a partial archive instead"
        )
    images = []
    for start in range(0, len(chosen), _CHUNK):
        part = chosen[start : start + _CHUNK]
        images += _transform_encoded([found[name][1] for name in part], part, image_size, resize_size)
    meta = {
        "split": "validation",
        "source": str(tar_path),
        "layout": "tfds",
        "preprocessing": f"torchvision Resize({resize_size}) + CenterCrop({image_size}) + ToTensor (PIL bilinear)",
        "seed": seed,
        "available": len(names),
    }
    return _image_set(images, labels, chosen, meta)

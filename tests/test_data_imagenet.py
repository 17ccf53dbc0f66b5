"""ImageNet validation loaders on tiny fake copies in the official layouts (never the network).

Facts checked independently of tfagg: the torchvision eval transform's sizes/offsets for given
shapes (hand-computed), the image centroid's position after resize + crop (a linear map), the
published label of ILSVRC2012_val_00000001 (class 65, n01751748 "sea snake"), and label tables
written by the test.
"""
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from tfagg.data._image_io import center_crop_box, resized_shorter_side_size, torchvision_eval_transform
from tfagg.data.imagenet import (
    canonical_validation_label,
    imagenet_wnids,
    load_imagenet_val,
    load_imagenet_val_tfds,
    read_label_file,
)


pytestmark = pytest.mark.usefixtures("no_network")


def jpeg_bytes(width, height, seed):
    rng = np.random.default_rng(seed)
    # Blocky content survives JPEG well and varies between images.
    small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.NEAREST)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95)
    return buf.getvalue()


SIZES = [(60, 45), (40, 70), (64, 64), (90, 50), (33, 57), (48, 36), (70, 70), (45, 80)]


def val_name(i):
    return f"ILSVRC2012_val_{i:08d}.JPEG"


def write_val_tar(path, numbers):
    with tarfile.open(path, "w") as tar:
        for i in numbers:
            data = jpeg_bytes(*SIZES[i % len(SIZES)], seed=i)
            info = tarfile.TarInfo(val_name(i))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_flat_folder(folder, names, seed0=0):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        (folder / name).write_bytes(jpeg_bytes(*SIZES[k % len(SIZES)], seed=seed0 + k))
    return folder


def pil_reference(data, resize_size, crop):
    """torchvision's eval transform written out with explicit PIL calls."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    if w <= h:
        size = (resize_size, int(resize_size * h / w))
    else:
        size = (int(resize_size * w / h), resize_size)
    image = image.resize(size, Image.BILINEAR)
    left = int(round((size[0] - crop) / 2.0))
    top = int(round((size[1] - crop) / 2.0))
    return np.asarray(image.crop((left, top, left + crop, top + crop)), np.float32) / 255.0


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(
    "width, height, resized, box",
    [
        (500, 375, (341, 256), (58, 16, 282, 240)),  # round(58.5) = 58 (Python rounds half to even)
        (375, 500, (256, 341), (16, 58, 240, 282)),
        (200, 100, (512, 256), (144, 16, 368, 240)),
        (256, 256, (256, 256), (16, 16, 240, 240)),
    ],
)
def test_torchvision_resize_and_crop_geometry(width, height, resized, box):
    assert resized_shorter_side_size(width, height, 256) == resized
    assert center_crop_box(*resized, 224) == box


def test_eval_transform_equals_explicit_pil_pipeline_and_keeps_constants():
    data = jpeg_bytes(500, 375, seed=3)
    out = torchvision_eval_transform(Image.open(io.BytesIO(data)).convert("RGB"))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, pil_reference(data, 256, 224))
    grey = Image.new("RGB", (123, 77), (10, 200, 77))
    np.testing.assert_array_equal(torchvision_eval_transform(grey)[..., 1], np.float32(200) / np.float32(255))


def test_eval_transform_moves_content_by_the_expected_linear_map():
    # A bright square on black in a 600x400 image: Resize(256) scales by 0.64 to 384x256, the
    # crop starts at left = (384 - 224) / 2 = 80, top = (256 - 224) / 2 = 16. A normalised
    # symmetric filter preserves the centroid, so it must land at 0.64 * c - offset.
    image = np.zeros((400, 600, 3), np.uint8)
    image[150:200, 300:360] = 255  # centre (x, y) = (330, 175) in pixel-edge coordinates
    out = torchvision_eval_transform(Image.fromarray(image))[..., 0]
    ys, xs = np.indices(out.shape)
    cx = (out * (xs + 0.5)).sum() / out.sum()
    cy = (out * (ys + 0.5)).sum() / out.sum()
    assert abs(cx - (330 * 0.64 - 80)) < 0.05
    assert abs(cy - (175 * 0.64 - 16)) < 0.05


def test_eval_transform_rejects_crop_larger_than_resize():
    with pytest.raises(ValueError, match="resize_size"):
        torchvision_eval_transform(Image.new("RGB", (50, 50)), resize_size=100, crop_size=120)


# --------------------------------------------------------------------------- label tables


def test_label_tables_follow_torchvision_order():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764" and list(wnids) == sorted(wnids)
    assert canonical_validation_label(val_name(1)) == 65  # the published first validation label
    assert wnids[65] == "n01751748"
    assert canonical_validation_label("ILSVRC2012_val_00000001") == 65
    assert canonical_validation_label("my_photo.jpg") is None


def test_read_label_file_formats(tmp_path):
    text = tmp_path / "labels.txt"
    text.write_text(f"filename label\n{val_name(1)} n01440764\n{val_name(2)},n01443537\n# comment\n{val_name(3)} 999\n")
    assert read_label_file(text) == {"ILSVRC2012_val_00000001": 0, "ILSVRC2012_val_00000002": 1, "ILSVRC2012_val_00000003": 999}
    kaggle = tmp_path / "LOC_val_solution.csv"
    kaggle.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n"
        "ILSVRC2012_val_00000001,n01443537 1 2 3 4\n"
    )
    wnids = imagenet_wnids()
    assert read_label_file(kaggle) == {
        "ILSVRC2012_val_00008726": wnids.index("n02119789"),
        "ILSVRC2012_val_00000001": 1,
    }


@pytest.mark.parametrize(
    "content, message",
    [
        ("a.JPEG n99999999\n", "not ImageNet-1k classes"),
        ("a.JPEG 1000\n", r"outside \[0, 999\]"),
        ("a.JPEG -1\n", r"outside \[0, 999\]"),
        ("ImageId,PredictionString\nILSVRC2012_val_00000001,\n", "neither a wnid nor an integer"),
        ("65\n970\n", "devkit"),
        ("a.JPEG n01440764\nb.JPEG tench\n", "neither a wnid nor an integer"),
        ("a.JPEG 3\na.JPEG 4\n", "two different labels"),
        ("\n", "no labels"),
    ],
)
def test_read_label_file_errors(tmp_path, content, message):
    path = tmp_path / "labels.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_label_file(path)


# --------------------------------------------------------------------------- loaders


def test_tar_source_canonical_labels_and_torchvision_pixels(tmp_path):
    tar = write_val_tar(tmp_path / "ILSVRC2012_img_val.tar", range(1, 9))
    data = load_imagenet_val(tmp_path, n=5, seed=0)  # the folder holding the tar
    assert data.images.shape == (5, 224, 224, 3) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert data.ids == sorted(data.ids) and len(set(data.ids)) == 5
    assert data.name == "imagenet" and len(data.class_names) == 1000
    expected = [canonical_validation_label(i) for i in data.ids]
    np.testing.assert_array_equal(data.labels, expected)
    assert data.labels.dtype == np.int32
    with tarfile.open(tar) as archive:
        for k, name in enumerate(data.ids):
            raw = archive.extractfile(name).read()
            np.testing.assert_array_equal(data.images[k], pil_reference(raw, 256, 224))
    # The tar path itself works too, and gives the same set.
    again = load_imagenet_val(tar, n=5, seed=0)
    assert again.ids == data.ids
    np.testing.assert_array_equal(again.images, data.images)


def test_choice_is_seeded_and_n_none_takes_all(tmp_path):
    folder = write_flat_folder(tmp_path / "val", [val_name(i) for i in range(1, 11)])
    a = load_imagenet_val(folder, n=4, seed=7, image_size=32, resize_size=40)
    b = load_imagenet_val(folder, n=4, seed=7, image_size=32, resize_size=40)
    c = load_imagenet_val(folder, n=4, seed=8, image_size=32, resize_size=40)
    assert a.ids == b.ids and a.ids != c.ids
    np.testing.assert_array_equal(a.images, b.images)
    everything = load_imagenet_val(folder, n=None, image_size=32, resize_size=40)
    assert everything.ids == [val_name(i) for i in range(1, 11)]
    assert everything.images.shape == (10, 32, 32, 3)
    assert everything.meta["available"] == 10


def test_flat_folder_with_label_files(tmp_path):
    names = ["cat.JPEG", "dog.jpg", "bird.png"]
    folder = write_flat_folder(tmp_path / "imgs", names)
    labels = tmp_path / "gt.txt"
    labels.write_text("cat.JPEG n01440764\ndog n01443537\nbird.png 17\nunused.JPEG 3\n")
    data = load_imagenet_val(folder, n=None, label_file=labels, image_size=16, resize_size=20)
    assert data.ids == ["bird.png", "cat.JPEG", "dog.jpg"]
    np.testing.assert_array_equal(data.labels, [17, 0, 1])

    kaggle = tmp_path / "LOC_val_solution.csv"
    kaggle.write_text("ImageId,PredictionString\ncat,n01484850 1 1 5 5\ndog,n01440764 0 0 3 3\nbird,n01443537 1 1 2 2\n")
    data = load_imagenet_val(folder, n=None, label_file=kaggle, image_size=16, resize_size=20)
    np.testing.assert_array_equal(data.labels, [1, 2, 0])

    incomplete = tmp_path / "some.txt"
    incomplete.write_text("cat.JPEG 1\n")
    with pytest.raises(ValueError, match=r"no label for 2 of the 3 images.*bird\.png"):
        load_imagenet_val(folder, label_file=incomplete)
    with pytest.raises(ValueError, match="official validation names"):
        load_imagenet_val(folder)


def test_imagefolder_tree(tmp_path):
    root = tmp_path / "val"
    write_flat_folder(root / "n01443537", ["x.JPEG", "y.JPEG"], seed0=10)
    write_flat_folder(root / "n01440764", ["z.JPEG"], seed0=20)
    (root / "n01440764" / "notes.txt").write_text("not an image")
    data = load_imagenet_val(root, n=None, image_size=24, resize_size=24)
    assert data.ids == ["n01440764/z.JPEG", "n01443537/x.JPEG", "n01443537/y.JPEG"]
    np.testing.assert_array_equal(data.labels, [0, 1, 1])
    assert data.images.shape == (3, 24, 24, 3)

    write_flat_folder(root / "cats", ["c.JPEG"])
    with pytest.raises(ValueError, match=r"not ImageNet-1k wnids: \['cats'\]"):
        load_imagenet_val(root)


def test_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)does not exist.*ILSVRC2012_img_val.tar"):
        load_imagenet_val(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="(?s)no JPEG images found.*ImageFolder"):
        load_imagenet_val(tmp_path / "empty")
    not_tar = tmp_path / "a.tar"
    not_tar.write_text("plain text")
    with pytest.raises(ValueError, match="not a tar archive"):
        load_imagenet_val(not_tar)
    write_flat_folder(tmp_path / "ok", [val_name(1)])
    with pytest.raises(ValueError, match="resize_size"):
        load_imagenet_val(tmp_path / "ok", image_size=256, resize_size=224)
    with pytest.raises(ValueError, match="`n` must be >= 1"):
        load_imagenet_val(tmp_path / "ok", n=0)
    with pytest.raises(FileNotFoundError, match="label_file"):
        load_imagenet_val(tmp_path / "ok", label_file=tmp_path / "nope.txt")


# --------------------------------------------------------------------------- tensorflow-datasets


def test_tfds_route_builds_offline_and_matches_direct_reading(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    write_val_tar(manual / "ILSVRC2012_img_val.tar", range(1, 7))
    # A train archive next to it must be ignored (building it would take hours): make it unreadable.
    (manual / "ILSVRC2012_img_train.tar").write_bytes(b"not a tar")
    via_tfds = load_imagenet_val_tfds(manual, data_dir=tmp_path / "tfds", n=4, seed=1, image_size=32, resize_size=36)
    direct = load_imagenet_val(manual, n=4, seed=1, image_size=32, resize_size=36)
    assert via_tfds.ids == direct.ids
    np.testing.assert_array_equal(via_tfds.labels, direct.labels)
    np.testing.assert_array_equal(via_tfds.images, direct.images)
    assert via_tfds.meta["layout"] == "tfds" and via_tfds.meta["available"] == 6
    # Only the validation split was prepared; a second call reuses it (no tar needed any more).
    (manual / "ILSVRC2012_img_val.tar").rename(tmp_path / "moved.tar")
    (manual / "ILSVRC2012_img_val.tar").write_bytes(b"")  # present but unusable: must not be re-read
    again = load_imagenet_val_tfds(manual, data_dir=tmp_path / "tfds", n=4, seed=1, image_size=32, resize_size=36)
    np.testing.assert_array_equal(again.images, via_tfds.images)


def test_tfds_route_rejects_partial_tar_labels_and_missing_tar(tmp_path):
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_val.tar"):
        load_imagenet_val_tfds(tmp_path, data_dir=tmp_path / "tfds")
    manual = tmp_path / "manual"
    manual.mkdir()
    # Files 2 and 5 only: tfds would give them the labels of files 1 and 2.
    write_val_tar(manual / "ILSVRC2012_img_val.tar", [2, 5])
    with pytest.raises(ValueError, match="complete ILSVRC2012_img_val.tar"):
        load_imagenet_val_tfds(manual, data_dir=tmp_path / "tfds", image_size=16, resize_size=16)
    # Reading the tar directly labels them by file number.
    data = load_imagenet_val(manual, image_size=16, resize_size=16)
    np.testing.assert_array_equal(data.labels, [canonical_validation_label(val_name(2)), canonical_validation_label(val_name(5))])

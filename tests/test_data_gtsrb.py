"""GTSRB loader on tiny fake copies of the official archives and their extracted folders.

The fake images are blue with a red sign box exactly at the annotated ROI, so the expected
pixels and masks after resizing are known by hand.
"""
import zipfile

import numpy as np
import pytest
from PIL import Image

from tfagg.data.gtsrb import GTSRB_CLASS_NAMES, gtsrb_tf_dataset, load_gtsrb, roi_mask

HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
TRAIN_CLASSES = (0, 1, 14, 42)
# (width, height, roi) cycled over the fake images; roi = inclusive (x1, y1, x2, y2)
SHAPES = [(50, 40, (5, 4, 44, 35)), (29, 30, (5, 6, 24, 25)), (64, 48, (6, 5, 57, 42)), (31, 36, (5, 5, 25, 30))]


pytestmark = pytest.mark.usefixtures("no_network")


def sign_image(width, height, roi):
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 2] = 255
    x1, y1, x2, y2 = roi
    pixels[y1 : y2 + 1, x1 : x2 + 1] = (255, 0, 0)
    return Image.fromarray(pixels)


def csv_text(rows, with_class=True):
    header = HEADER if with_class else HEADER.rsplit(";", 1)[0]
    lines = [header]
    for name, (w, h, roi), label in rows:
        fields = [name, w, h, *roi] + ([label] if with_class else [])
        lines.append(";".join(str(f) for f in fields))
    return "\r\n".join(lines) + "\r\n"  # the official files use CRLF


def write_extracted(root, n_test=7, per_class=3):
    """The official tree as the three archives extract; returns {archive path: (label, shape)}."""
    truth = {}
    k = 0
    for cls in TRAIN_CLASSES:
        folder = root / "GTSRB" / "Final_Training" / "Images" / f"{cls:05d}"
        folder.mkdir(parents=True)
        rows = []
        for j in range(per_class):
            shape = SHAPES[k % len(SHAPES)]
            k += 1
            name = f"{j // 2:05d}_{j % 2:05d}.ppm"
            sign_image(*shape).save(folder / name)
            rows.append((name, shape, cls))
            truth[f"GTSRB/Final_Training/Images/{cls:05d}/{name}"] = (cls, shape)
        (folder / f"GT-{cls:05d}.csv").write_text(csv_text(rows), newline="")
    test_dir = root / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    rows = []
    for i in range(n_test):
        shape = SHAPES[i % len(SHAPES)]
        name = f"{i:05d}.ppm"
        sign_image(*shape).save(test_dir / name)
        label = (7 * i + 3) % 43
        rows.append((name, shape, label))
        truth[f"GTSRB/Final_Test/Images/{name}"] = (label, shape)
    (test_dir / "GT-final_test.test.csv").write_text(csv_text(rows, with_class=False), newline="")
    (root / "GT-final_test.csv").write_text(csv_text(rows), newline="")
    return truth


def write_zips(src, dst):
    """The three official archives with the official member paths."""
    dst.mkdir(parents=True, exist_ok=True)
    for zip_name, sub in (("GTSRB_Final_Training_Images.zip", "Final_Training"), ("GTSRB_Final_Test_Images.zip", "Final_Test")):
        with zipfile.ZipFile(dst / zip_name, "w") as archive:
            for path in sorted((src / "GTSRB" / sub).rglob("*")):
                archive.write(path, path.relative_to(src).as_posix())
    with zipfile.ZipFile(dst / "GTSRB_Final_Test_GT.zip", "w") as archive:
        archive.write(src / "GT-final_test.csv", "GT-final_test.csv")


@pytest.fixture
def gtsrb(tmp_path):
    extracted = tmp_path / "extracted"
    truth = write_extracted(extracted)
    write_zips(extracted, tmp_path / "zips")
    return extracted, tmp_path / "zips", truth


def test_test_split_pixels_labels_masks(gtsrb):
    root, _, truth = gtsrb
    data = load_gtsrb(root, n=None)
    assert data.images.shape == (7, 128, 128, 3) and data.images.dtype == np.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert data.ids == [f"GTSRB/Final_Test/Images/{i:05d}.ppm" for i in range(7)]
    np.testing.assert_array_equal(data.labels, [truth[i][0] for i in data.ids])
    assert data.labels.dtype == np.int32 and data.class_names == list(GTSRB_CLASS_NAMES) and len(data.class_names) == 43
    assert data.name == "gtsrb" and data.masks.shape == (7, 128, 128) and data.masks.dtype == bool

    # Image 0 is 50x40 with ROI x in [5, 45), y in [4, 36): output pixel j is inside when
    # (j + 0.5) * 50 / 128 in [5, 45), i.e. j in 13..114; rows likewise (j + 0.5) * 40 / 128 in [4, 36).
    expected = np.zeros((128, 128), bool)
    expected[13:115, 13:115] = True
    np.testing.assert_array_equal(data.masks[0], expected)
    # Image 1 is 29x30 with ROI [5, 25) x [6, 26): (j + 0.5) * 29 / 128 in [5, 25) gives columns
    # 22..109 (j + 0.5 >= 22.07), (j + 0.5) * 30 / 128 in [6, 26) rows 26..110.
    expected = np.zeros((128, 128), bool)
    expected[26:111, 22:110] = True
    np.testing.assert_array_equal(data.masks[1], expected)

    for image, mask in zip(data.images, data.masks):
        # Away from the box edge (bilinear support) the pixels are pure red / pure blue.
        inner = np.zeros_like(mask)
        rows, cols = np.nonzero(mask)
        inner[rows.min() + 6 : rows.max() - 5, cols.min() + 6 : cols.max() - 5] = True
        outer = ~mask
        outer[max(rows.min() - 6, 0) : rows.max() + 7, max(cols.min() - 6, 0) : cols.max() + 7] = False
        assert np.abs(image[inner] - [1, 0, 0]).max() < 1e-6 and inner.sum() > 100
        assert np.abs(image[outer] - [0, 0, 1]).max() < 1e-6 and outer.sum() > 100


def test_zip_archives_and_extracted_folders_agree(gtsrb):
    extracted, zips, _ = gtsrb
    for split in ("test", "train"):
        a = load_gtsrb(extracted, split=split, n=5, seed=3, image_size=32)
        b = load_gtsrb(zips, split=split, n=5, seed=3, image_size=32)
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.masks, b.masks)
    assert b.meta["source"].endswith("GTSRB_Final_Training_Images.zip")


def test_train_split_reads_per_class_annotations(gtsrb):
    _, zips, truth = gtsrb
    data = load_gtsrb(zips, split="train", n=None, image_size=16)
    assert len(data) == 3 * len(TRAIN_CLASSES)
    assert all(i.startswith("GTSRB/Final_Training/Images/") for i in data.ids)
    np.testing.assert_array_equal(data.labels, [truth[i][0] for i in data.ids])
    assert sorted(set(data.labels.tolist())) == list(TRAIN_CLASSES)


def test_crop_to_roi_fills_the_image_with_the_sign(gtsrb):
    root, _, _ = gtsrb
    data = load_gtsrb(root, n=None, image_size=40, crop_to_roi=True)
    np.testing.assert_allclose(data.images, np.broadcast_to([1, 0, 0], data.images.shape), atol=1e-6)
    assert data.masks.all()
    assert data.meta["crop_to_roi"] is True


def test_seeded_choice(gtsrb):
    root, _, _ = gtsrb
    a = load_gtsrb(root, n=3, seed=1, image_size=16)
    b = load_gtsrb(root, n=3, seed=1, image_size=16)
    c = load_gtsrb(root, n=3, seed=2, image_size=16)
    assert a.ids == b.ids and a.ids != c.ids and a.ids == sorted(a.ids)
    assert len(load_gtsrb(root, n=100, image_size=16)) == 7


def test_roi_mask_hand_case():
    # 10x10 image scaled to 20: ROI [2, 5) covers output pixels 4..9 (centres 2.25 .. 4.75).
    mask = roi_mask((2, 0, 4, 9), (10, 10), 20)
    assert mask[:, 4:10].all() and not mask[:, :4].any() and not mask[:, 10:].any()


def test_tf_dataset_streams_the_same_images(gtsrb):
    _, zips, _ = gtsrb
    reference = load_gtsrb(zips, split="train", n=None, image_size=24)
    ordered = gtsrb_tf_dataset(zips, split="train", image_size=24, batch_size=5, shuffle=False)
    assert int(ordered.cardinality()) == 3  # 12 images in batches of 5
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ordered])
    assert images[0].shape == (5, 24, 24, 3) and images[0].dtype == np.float32 and labels[0].dtype == np.int32
    np.testing.assert_array_equal(np.concatenate(images), reference.images)
    np.testing.assert_array_equal(np.concatenate(labels), reference.labels)

    def epoch(ds):
        return np.concatenate([y.numpy() for _, y in ds])

    shuffled = gtsrb_tf_dataset(zips, split="train", image_size=24, batch_size=4, seed=5)
    again = gtsrb_tf_dataset(zips, split="train", image_size=24, batch_size=4, seed=5)
    first = epoch(shuffled)
    np.testing.assert_array_equal(first, epoch(again))
    np.testing.assert_array_equal(np.sort(first), np.sort(reference.labels))


def test_layout_errors(tmp_path, gtsrb):
    extracted, _, _ = gtsrb
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gtsrb(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="(?s)no GTSRB test images.*GTSRB_Final_Test_Images.zip"):
        load_gtsrb(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="(?s)no GTSRB training set.*Final_Training/Images"):
        load_gtsrb(tmp_path / "empty", split="train")
    with pytest.raises(ValueError, match="must be the folder"):
        load_gtsrb(extracted / "GT-final_test.csv")
    with pytest.raises(ValueError, match="`split` must be 'train' or 'test'"):
        load_gtsrb(extracted, split="validation")

    (extracted / "GT-final_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="GTSRB_Final_Test_GT.zip"):
        load_gtsrb(extracted)
    # The .test.csv shipped with the images has no ClassId: using it as labels is an error.
    (extracted / "GT-final_test.csv").write_bytes((extracted / "GTSRB/Final_Test/Images/GT-final_test.test.csv").read_bytes())
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['ClassId'\]"):
        load_gtsrb(extracted)

    (extracted / "GTSRB/Final_Training/Images/00014/GT-00014.csv").unlink()
    with pytest.raises(FileNotFoundError, match="GT-00014.csv"):
        load_gtsrb(extracted, split="train")
    bad = extracted / "GTSRB/Final_Training/Images/00014/GT-00014.csv"
    bad.write_text(HEADER + "\r\n00000_00000.ppm;50;40;five;4;44;35;14\r\n", newline="")
    with pytest.raises(ValueError, match="'Roi.X1' must be an integer"):
        load_gtsrb(extracted, split="train")

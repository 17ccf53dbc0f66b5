"""The paper-scale presets (ImageNet, GTSRB) run the same pipeline: tested on tiny fake copies."""
import numpy as np
import pytest

from test_data_gtsrb import write_extracted
from test_data_imagenet import write_val_tar
from test_experiment_pipeline import TINY_EXPLAINERS

from tfagg.experiment.config import preset_config
from tfagg.experiment.pipeline import run_pipeline
from tfagg.experiment.report import write_report
from tfagg.models import resnet18
from tfagg.models.zoo import save_model


pytestmark = pytest.mark.usefixtures("no_network")


def tiny_model_dir(tmp_path, num_classes):
    import keras

    keras.utils.set_random_seed(0)
    d = tmp_path / f"model{num_classes}"
    save_model(resnet18(num_classes, 32, 4, "imagenet"), {"test_accuracy": None}, d)
    return d


def tiny(dataset, data_dir, weights):
    return preset_config(dataset, n_images=2, image_size=32, data_dir=str(data_dir), weights=str(weights),
                         steps=8, batch_size=16, explainers=TINY_EXPLAINERS,
                         sweeps={"percentile": {"k": [10, 50]}})


def test_paper_presets_keep_the_papers_settings():
    for name, size in (("imagenet", 224), ("gtsrb", 128)):
        cfg = preset_config(name, data_dir="/data")
        assert (cfg.n_images, cfg.image_size, cfg.steps) == (2000, size, 1000)
        assert cfg.explainers == {m: {} for m in cfg.explainers}  # Appendix A defaults, GradCAM on stage4
    with pytest.raises(ValueError, match="data-dir"):
        preset_config("imagenet")


def test_gtsrb_preset_on_a_fake_official_tree(tmp_path):
    root = tmp_path / "gtsrb"
    write_extracted(root)
    run_dir = tmp_path / "run"
    summary = run_pipeline(tiny("gtsrb", root, tiny_model_dir(tmp_path, 43)), run_dir, progress=False)
    assert summary["complete"]
    report = write_report(run_dir)
    text = (report / "table1.md").read_text()
    assert "Published columns: Mahlau & Nolde (2022) Table 1, gtsrb" in text
    assert "0.6740" in text  # the published GTSRB average insertion, side by side


def test_imagenet_preset_on_a_fake_validation_tar(tmp_path):
    tar = write_val_tar(tmp_path / "ILSVRC2012_img_val.tar", [1, 2, 3, 5])
    run_dir = tmp_path / "run"
    summary = run_pipeline(tiny("imagenet", tar, tiny_model_dir(tmp_path, 1000)), run_dir, progress=False)
    assert summary["complete"]
    text = (write_report(run_dir) / "table1.md").read_text()
    assert "0.3808" in text and "imagenet" in text
    import sqlite3

    conn = sqlite3.connect(str(run_dir / "results.sqlite"))
    ids = [r[0] for r in conn.execute("SELECT DISTINCT image_id FROM images")]
    conn.close()
    assert len(ids) == 2 and all("ILSVRC2012_val_" in i for i in ids)

"""The Mahlau & Nolde pipeline on a tiny model: results, report, resumption, kill -9, config guard."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from tfagg.data.synth_signs import generate_signs
from tfagg.experiment.config import BASE_METHODS, RunConfig
from tfagg.experiment.maps import ablation_specs, phase1_specs
from tfagg.experiment.pipeline import ConfigMismatchError, run_pipeline
from tfagg.experiment.report import write_report
from tfagg.experiment.store import ensemble_path, load_ensemble, save_ensemble
from tfagg.models import resnet18
from tfagg.models.zoo import save_model

TINY_EXPLAINERS = {
    "smoothgrad": {"n_samples": 3},
    "integrated_gradients": {"steps": 3},
    "expected_gradients": {"n_baselines": 2, "steps": 2},
    "gradcam": {},
    "polycam": {},
    "igos_pp": {"iterations": 2, "steps": 2, "mask_size": 8},
    "rise": {"n_masks": 32, "grid_size": 4},
}


def tiny_config(model_dir, **kw):
    d = dict(dataset="synth-signs", n_images=3, image_size=32, model="tiny", weights=str(model_dir), seed=3,
             steps=16, batch_size=32, explainers=TINY_EXPLAINERS, sweeps={"ucb": {"epsilon": [-1.0, 0.0]}})
    d.update(kw)
    return RunConfig(**d)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("model")
    save_model(resnet18(43, 32, 4, "imagenet"), {"test_accuracy": None}, d)
    return d


def db_rows(run_dir):
    conn = sqlite3.connect(str(run_dir / "results.sqlite"))
    scores = conn.execute("SELECT * FROM scores ORDER BY image_id, map_key").fetchall()
    curves = conn.execute("SELECT * FROM curves ORDER BY image_id, map_key").fetchall()
    conn.close()
    return scores, curves


@pytest.fixture(scope="module")
def full_run(model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    summary = run_pipeline(tiny_config(model_dir), run_dir, progress=False)
    assert summary["complete"]
    return run_dir


def test_full_run_stores_every_map_of_every_image(full_run):
    scores, curves = db_rows(full_run)
    cfg = tiny_config(full_run)
    n1 = len(phase1_specs(cfg.sweeps))
    image_ids = {r[1] for r in scores}
    assert len(image_ids) == 3
    per_image = len(scores) // 3
    assert per_image > n1  # phase-1 maps plus the ablation's extra top-k ensembles
    assert len(curves) == len(scores)
    for row in scores:
        assert 0.0 <= row[-2] <= 1.0 and 0.0 <= row[-1] <= 1.0  # AUCs of probabilities
    ins = np.frombuffer(curves[0][3], "<f4")
    assert ins.shape == (17,)  # steps + 1 points


def test_report_writes_table_and_all_figures(full_run):
    out = write_report(full_run)
    names = {p.name for p in out.iterdir()}
    for expected in ["table1.md", "table1.csv", "fig01_base_maps.png", "fig02_normalizations.png",
                     "fig03_aggregations.png", "fig04_curves.png", "fig06_ucb.png", "fig10_normalizations.png",
                     "fig11_ablation.png"]:
        assert expected in names, expected
    text = (out / "table1.md").read_text()
    assert "not comparable" in text and "Kendall" in text
    assert text.count("\n| ") >= 10  # header + ten methods


def test_resumed_run_equals_uninterrupted_run(model_dir, full_run, tmp_path):
    cfg = tiny_config(model_dir)
    first = run_pipeline(cfg, tmp_path, progress=False, stop_after=1)
    assert not first["complete"]
    # A corrupt ensemble of an unfinished image must be recomputed, not used.
    data = generate_signs(3, resolution=32, seed=3, split="test")
    ensemble_id = json.loads((tmp_path / "identity.json").read_text())["ensemble_id"]
    bad = ensemble_path(tmp_path, data.ids[1], ensemble_id)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"PK\x03\x04 truncated")
    run_pipeline(cfg, tmp_path, progress=False)
    assert db_rows(tmp_path) == db_rows(full_run)


def test_kill_minus_9_then_rerun_equals_uninterrupted(model_dir, full_run, tmp_path):
    cfg = tiny_config(model_dir)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    script = (
        "import json, sys, tfagg\n"
        "from tfagg.experiment.config import RunConfig\n"
        "from tfagg.experiment.pipeline import run_pipeline\n"
        "cfg = RunConfig.from_dict(json.load(open(sys.argv[1])))\n"
        "run_pipeline(cfg, sys.argv[2], progress=False)\n"
    )
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cfg.json"), str(run_dir)],
                            env=dict(os.environ))
    db = run_dir / "results.sqlite"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                conn = sqlite3.connect(str(db))
                done = conn.execute("SELECT COUNT(*) FROM progress").fetchone()[0]
                conn.close()
            except sqlite3.Error:
                done = 0
            if done >= 1:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_pipeline(cfg, run_dir, progress=False)
    assert db_rows(run_dir) == db_rows(full_run)


def test_changed_config_is_refused_unless_allowed(model_dir, full_run):
    changed = tiny_config(model_dir, steps=8)
    with pytest.raises(ConfigMismatchError, match="steps"):
        run_pipeline(changed, full_run, progress=False)


def test_rows_of_two_configs_never_mix(model_dir, tmp_path):
    a = tiny_config(model_dir, n_images=1, ablation=False)
    b = tiny_config(model_dir, n_images=1, ablation=False, seed=4)
    run_pipeline(a, tmp_path, progress=False)
    id_a = json.loads((tmp_path / "identity.json").read_text())["config_id"]
    run_pipeline(b, tmp_path, progress=False, allow_config_change=True)
    id_b = json.loads((tmp_path / "identity.json").read_text())["config_id"]
    conn = sqlite3.connect(str(tmp_path / "results.sqlite"))
    ids = {r[0] for r in conn.execute("SELECT DISTINCT config_id FROM scores")}
    conn.close()
    assert id_a != id_b and ids == {id_a, id_b}


def test_other_model_weights_are_refused(model_dir, full_run, tmp_path):
    import keras

    keras.utils.set_random_seed(1)
    other = tmp_path / "other_model"
    save_model(resnet18(43, 32, 4, "imagenet"), {"test_accuracy": None}, other)
    with pytest.raises(ConfigMismatchError, match="model weights"):
        run_pipeline(tiny_config(model_dir, weights=str(other)), full_run, progress=False)


def test_map_keys_are_canonical():
    from tfagg.experiment.maps import aggregate_spec

    assert aggregate_spec("percentile", k=25).key == aggregate_spec("percentile").key
    assert aggregate_spec("average", members=("rise", "gradcam")).key == \
        aggregate_spec("average", members=("gradcam", "rise")).key
    assert aggregate_spec("ucb", members=BASE_METHODS[::-1]).key == aggregate_spec("ucb").key


def test_ensemble_store_detects_corruption(tmp_path):
    maps = np.random.default_rng(0).normal(size=(7, 8, 8)).astype(np.float32)
    path = save_ensemble(tmp_path, "img/1", maps, BASE_METHODS, "cfg")
    np.testing.assert_array_equal(load_ensemble(tmp_path, "img/1", BASE_METHODS, "cfg"), maps)
    assert load_ensemble(tmp_path, "img/1", BASE_METHODS, "other-cfg") is None
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated
    assert load_ensemble(tmp_path, "img/1", BASE_METHODS, "cfg") is None


def test_ablation_specs_grow_with_k():
    order = list(BASE_METHODS)
    specs = ablation_specs(order, order[::-1])
    members = {s.members for s in specs}
    assert (order[0],) in members and tuple(order) in members and (order[-1],) in members

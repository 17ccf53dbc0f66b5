"""The resumable Mahlau & Nolde (2022) pipeline: ensembles -> maps -> insertion/deletion -> SQLite.

Phase 1, per image: the seven base attributions (computed once, stored, never recomputed), then every
map Table 1 and Figures 4-10 need, scored together in one insertion/deletion batch stream.
Phase 2 (Figure 11), per image: top-k ensembles, with the bases ordered by their mean score over the
run's images from phase 1.

Seeds derive from ``(run seed, image id)``, so results do not depend on order, batch size or
resumption; each image's rows land in one transaction.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tfagg.experiment.config import BASE_METHODS, RunConfig, run_identity
from tfagg.experiment.maps import ablation_specs, build_maps, phase1_specs
from tfagg.experiment.store import ResultsStore, load_ensemble, save_ensemble
from tfagg.random import derive_seed

CONFIG_FILE = "config.json"
IDENTITY_FILE = "identity.json"
DB_FILE = "results.sqlite"


class ConfigMismatchError(ValueError):
    pass


def prepare_run_dir(run_dir, config: RunConfig, identity: dict, allow_config_change: bool = False) -> Path:
    """Create ``run_dir`` or check that it belongs to this run; refuse a changed one unless allowed.

    A run is identified by its configuration, the explained model's weights and the tfagg version
    (:func:`tfagg.experiment.config.run_identity`): resuming with another model would mix results.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path, id_path = run_dir / CONFIG_FILE, run_dir / IDENTITY_FILE
    if cfg_path.exists() and id_path.exists() and not allow_config_change:
        old = RunConfig.from_dict(json.loads(cfg_path.read_text()))
        old_id = json.loads(id_path.read_text())
        if old_id.get("config_id") != identity["config_id"]:
            changed = sorted(k for k, v in config.to_dict().items() if old.to_dict().get(k) != v and k != "data_dir")
            if old_id.get("model_sha256") != identity["model_sha256"]:
                changed.append("model weights")
            if old_id.get("tfagg_version") != identity["tfagg_version"]:
                changed.append("tfagg version")
            raise ConfigMismatchError(
                f"run directory {run_dir} holds a run with another configuration (changed: {changed}). "
                "Use another --out directory, or pass --allow-config-change to add a run with the new "
                "configuration beside the old one (rows never mix: each carries its config id)."
            )
    cfg_path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    id_path.write_text(json.dumps(identity, indent=2, sort_keys=True))
    return run_dir


def read_run(run_dir):
    """``(config, identity)`` of the run most recently written to ``run_dir``."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / IDENTITY_FILE).is_file() \
            or not (run_dir / DB_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a tfagg run directory (expected {CONFIG_FILE}, {IDENTITY_FILE} and {DB_FILE})")
    config = RunConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
    return config, json.loads((run_dir / IDENTITY_FILE).read_text())


def load_dataset(config: RunConfig):
    if config.dataset == "synth-signs":
        from tfagg.data.synth_signs import load_synth_signs

        return load_synth_signs("test", config.n_images, config.image_size, config.seed)
    if config.dataset == "gtsrb":
        from tfagg.data.gtsrb import load_gtsrb

        return load_gtsrb(config.data_dir, split="test", n=config.n_images, seed=config.seed,
                          image_size=config.image_size)
    from tfagg.data.imagenet import load_imagenet_val

    # torchvision's eval transform: resize to 256/224 of the crop size, then center-crop.
    return load_imagenet_val(config.data_dir, n=config.n_images, seed=config.seed, image_size=config.image_size,
                             resize_size=int(round(config.image_size * 256 / 224)))


def load_run_model(config: RunConfig, progress: bool = True):
    """The model a run explains: the cached offline model, a trained GTSRB model, or converted weights."""
    from tfagg.models.zoo import cached_model, load_model, model_dir

    if config.dataset == "synth-signs" and config.weights is None:
        model, _ = cached_model("synth-signs", seed=0, progress=progress)
        return model
    if config.weights is not None:
        w = Path(config.weights)
        if w.is_dir():
            return load_model(w)[0]
        if w.suffix in (".pth", ".pt", ".npz"):
            from tfagg.models.torchvision_weights import load_torchvision_resnet18

            return load_torchvision_resnet18(w)
        raise ValueError(f"--weights must be a tfagg model directory or a torchvision .pth/.npz checkpoint; got {w}")
    return load_model(model_dir(config.model, 0))[0]


def make_explainers(model, config: RunConfig) -> dict:
    from tfagg.explainers import EXPLAINERS

    return {name: EXPLAINERS[name](model, batch_size=config.batch_size, **config.explainers.get(name, {}))
            for name in BASE_METHODS}


def compute_ensemble(explainers: dict, image: np.ndarray, target: int, seed: int) -> np.ndarray:
    """The seven base attributions ``(7, H, W)`` of one image."""
    return np.stack([explainers[m](image[None], np.array([target]), seed=derive_seed(seed, m))[0]
                     for m in BASE_METHODS])


def _score_image(model, config, image, target, specs, maps, image_id, position, label, target_prob, store,
                 config_id, phase):
    from tfagg.metrics import insertion_deletion

    res = insertion_deletion(model, image[None], np.array([target]), maps[None], steps=config.steps,
                             baseline=config.baseline, seed=derive_seed(config.seed, image_id, "metric"),
                             batch_size=config.batch_size, return_curves=True)
    ins, dele = np.asarray(res["insertion"])[0], np.asarray(res["deletion"])[0]
    ins_c, del_c = np.asarray(res["insertion_curve"])[0], np.asarray(res["deletion_curve"])[0]
    base = {"image_id": image_id, "dataset": config.dataset, "model": config.model}
    score_rows = [{**base, **s.row(), "insertion": float(ins[j]), "deletion": float(dele[j])}
                  for j, s in enumerate(specs)]
    curve_rows = [{"image_id": image_id, "map_key": s.key, "insertion": ins_c[j], "deletion": del_c[j]}
                  for j, s in enumerate(specs)]
    image_row = {"image_id": image_id, "position": position, "dataset": config.dataset, "label": label,
                 "target": target, "target_probability": target_prob}
    store.write_image_results(config_id, phase, image_row, score_rows, curve_rows)


def base_order(store: ResultsStore, config_id: str):
    """Bases ordered best first by mean insertion (descending) and by mean deletion (ascending)."""
    mean_ins, mean_del = {}, {}
    for m in BASE_METHODS:
        rows = store.scores(config_id, map_key=f"base|{m}")
        mean_ins[m] = np.mean([r["insertion"] for r in rows])
        mean_del[m] = np.mean([r["deletion"] for r in rows])
    return (sorted(BASE_METHODS, key=lambda m: -mean_ins[m]), sorted(BASE_METHODS, key=lambda m: mean_del[m]))


def _save_example(run_dir, data, i):
    """Keep the example image of Figures 1-3 in the run directory, so reports need no data access."""
    path = Path(run_dir) / "example_image.npz"
    if not path.exists():
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, image=data.images[i], image_id=np.array(data.ids[i]), label=int(data.labels[i]),
                            class_names=np.array(data.class_names or []))
        tmp.replace(path)


def run_pipeline(config: RunConfig, run_dir, allow_config_change: bool = False, progress: bool = True,
                 model=None, data=None, stop_after: int | None = None) -> dict:
    """Run (or resume) the whole pipeline into ``run_dir``; returns a small summary.

    ``model`` / ``data`` override what the config would load (tests, library use); ``stop_after``
    processes at most that many images in this call (to test resumption).
    """
    from tqdm.auto import tqdm

    from tfagg.batching import ModelRunner

    config.validate()
    t_start = time.time()
    data = data if data is not None else load_dataset(config)
    model = model if model is not None else load_run_model(config, progress)
    identity = run_identity(config, model)
    run_dir = prepare_run_dir(run_dir, config, identity, allow_config_change)
    config_id, ensemble_id = identity["config_id"], identity["ensemble_id"]
    store = ResultsStore(run_dir / DB_FILE)
    store.register_config(config_id, {"config": config.to_dict(), **identity})
    try:
        runner = ModelRunner(model, batch_size=min(config.batch_size, 256), score="probability")
        probs = runner.outputs(data.images).numpy()
        targets = probs.argmax(1) if config.target == "predicted" else np.asarray(data.labels)
        _save_example(run_dir, data, 0)
        explainers = {}  # built lazily: a resumed run with all ensembles stored never needs them

        def ensemble_of(i, image_id, seed):
            """The stored ensemble, or a fresh one if absent/corrupt (never a corrupt one)."""
            ens = load_ensemble(run_dir, image_id, BASE_METHODS, ensemble_id)
            if ens is None:
                if not explainers:
                    explainers.update(make_explainers(model, config))
                ens = compute_ensemble(explainers, data.images[i], int(targets[i]), seed)
                save_ensemble(run_dir, image_id, ens, BASE_METHODS, ensemble_id)
            return ens

        specs1 = phase1_specs(config.sweeps)
        phases = [("phase1", "ensembles + scores", lambda: specs1)]
        if config.ablation:
            def ablation():
                order_ins, order_del = base_order(store, config_id)
                return [s for s in ablation_specs(order_ins, order_del) if s.key not in {x.key for x in specs1}]
            phases.append(("ablation", "ablation (Fig. 11)", ablation))
        processed = 0
        for phase, desc, make_specs in phases:
            specs = make_specs()  # the ablation's specs need phase 1 of every image
            todo = [i for i in range(len(data)) if not store.is_done(config_id, data.ids[i], phase)]
            for i in tqdm(todo, desc=desc, unit="img", disable=not progress):
                if stop_after is not None and processed >= stop_after:
                    return {"run_dir": str(run_dir), "complete": False}
                image_id = data.ids[i]
                seed = derive_seed(config.seed, image_id)
                maps = build_maps(ensemble_of(i, image_id, seed), specs, seed=seed)
                _score_image(model, config, data.images[i], int(targets[i]), specs, maps, image_id, i,
                             int(data.labels[i]), float(probs[i, targets[i]]), store, config_id, phase)
                processed += 1
    finally:
        store.close()
    return {"run_dir": str(run_dir), "complete": True, "seconds": time.time() - t_start}

"""Tables and figures of Mahlau & Nolde (2022), rendered from a run directory's database only.

``write_report(run_dir)`` writes into ``run_dir/report/``:

* ``table1.md`` / ``table1.csv`` -- Table 1 with the published numbers of the matching data set,
  the difference, and the rank agreement (Kendall tau) with the paper's ordering of the methods;
* ``fig01_base_maps.png`` .. ``fig03_aggregations.png`` -- one example image (Figures 1-3);
* ``fig04_curves.png`` -- insertion/deletion curves of the bases and the average;
* ``fig05_percentile.png`` .. ``fig09_var.png`` -- hyperparameter sweeps;
* ``fig10_normalizations.png`` -- curves and AUCs per normalisation under average aggregation;
* ``fig11_ablation.png`` -- top-k ensembles under Average and UCB.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tfagg.experiment.config import BASE_METHODS, RunConfig
from tfagg.experiment.maps import NORMALIZATIONS, aggregate_spec, base_spec
from tfagg.experiment.store import ResultsStore
from tfagg.random import derive_seed

PRETTY = {
    "smoothgrad": "SmoothGrad", "integrated_gradients": "Integrated Gradients",
    "expected_gradients": "Expected Gradients", "gradcam": "GradCAM", "polycam": "PolyCAM",
    "igos_pp": "iGOS++", "rise": "RISE", "average": "Average", "rbm": "RBM", "var": "VAR", "ucb": "UCB",
    "percentile": "Percentile", "pi": "PI", "ei": "EI", "ci": "CI", "api": "API", "aei": "AEI",
}
SWEEP_FIGURES = [("percentile", "k", 5), ("ucb", "epsilon", 6), ("pi", "epsilon", 7), ("ei", "epsilon", 8), ("var", "epsilon", 9)]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_scores(store, config_id, key):
    rows = store.scores(config_id, map_key=key)
    if not rows:
        return None
    ins = np.array([r["insertion"] for r in rows])
    dele = np.array([r["deletion"] for r in rows])
    sem = lambda a: float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")  # noqa: E731
    return {"insertion": float(ins.mean()), "deletion": float(dele.mean()), "insertion_sem": sem(ins),
            "deletion_sem": sem(dele), "n": len(rows)}


def table1(store, config: RunConfig, config_id: str) -> dict:
    """Rows of Table 1 plus rank agreement with the published table."""
    from scipy.stats import kendalltau

    from tfagg.aggregate import TABLE1_METHODS
    from tfagg.reference import mahlau2022_table1

    published = mahlau2022_table1()
    rows = []
    for m in TABLE1_METHODS:
        s = _mean_scores(store, config_id, aggregate_spec(m).key)
        if s is None:
            continue
        rows.append({"method": m, **s, "published": published[m]})
    agreement = {}
    for ds in ("imagenet", "gtsrb"):
        for metric in ("insertion", "deletion"):
            ours = [r[metric] for r in rows]
            theirs = [r["published"][f"{ds}_{metric}"] for r in rows]
            tau = kendalltau(ours, theirs).statistic if len(rows) > 1 else float("nan")
            agreement[f"{ds}_{metric}"] = float(tau)
    return {"rows": rows, "agreement": agreement}


def _write_table1(out: Path, t1: dict, config: RunConfig):
    comparable = config.dataset in ("imagenet", "gtsrb")
    ds = config.dataset if comparable else None
    lines = [f"# Table 1 -- ensemble aggregation (z-score normalisation), {config.dataset}, "
             f"{t1['rows'][0]['n'] if t1['rows'] else 0} images, {config.steps} increments", ""]
    if comparable:
        lines.append(f"Published columns: Mahlau & Nolde (2022) Table 1, {ds}. Absolute values are comparable "
                     "when model, data and settings match the paper's (ResNet18, 2000 validation images, "
                     "1000 increments, random-normal baseline).")
    else:
        lines.append("This data set is not one of the paper's: absolute values are **not comparable** with the "
                     "published ones (other images, model and increments). Only the *ranking* of the methods "
                     "can be compared -- see the Kendall tau rows below (1 = same order, -1 = reversed).")
    lines.append("")
    head = "| Method | Insertion ↑ | ± s.e. | Deletion ↓ | ± s.e. |"
    sep = "|---|---|---|---|---|"
    if comparable:
        head += " Published ins. | Δ ins. | Published del. | Δ del. |"
        sep += "---|---|---|---|"
    lines += [head, sep]
    csv_rows = []
    for r in t1["rows"]:
        hp = r["published"]["hyperparameters"]
        name = PRETTY[r["method"]] + (f" ({hp})" if hp else "")
        line = f"| {name} | {r['insertion']:.4f} | {r['insertion_sem']:.4f} | {r['deletion']:.4f} | {r['deletion_sem']:.4f} |"
        row = {"method": r["method"], "insertion": r["insertion"], "deletion": r["deletion"], "n_images": r["n"]}
        if comparable:
            pi, pd = r["published"][f"{ds}_insertion"], r["published"][f"{ds}_deletion"]
            line += f" {pi:.4f} | {r['insertion'] - pi:+.4f} | {pd:.4f} | {r['deletion'] - pd:+.4f} |"
            row.update(published_insertion=pi, published_deletion=pd)
        lines.append(line)
        csv_rows.append(row)
    lines += ["", "Rank agreement with the published Table 1 (Kendall tau over the ten methods):", "",
              "| Published column | Insertion | Deletion |", "|---|---|---|"]
    for d in ("imagenet", "gtsrb"):
        a = t1["agreement"]
        lines.append(f"| {d} | {a[f'{d}_insertion']:+.3f} | {a[f'{d}_deletion']:+.3f} |")
    (out / "table1.md").write_text("\n".join(lines) + "\n")
    with open(out / "table1.csv", "w", newline="") as f:
        if csv_rows:
            w = csv.DictWriter(f, fieldnames=list(csv_rows[-1].keys()))
            w.writeheader()
            w.writerows(csv_rows)
    return "\n".join(lines)


def _curve_plot(plt, store, config_id, entries, title, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, key in entries:
        ins, dele = store.curves(config_id, key)
        if ins is None:
            continue
        x = np.linspace(0, 1, ins.shape[1])
        s = _mean_scores(store, config_id, key)
        axes[0].plot(x, ins.mean(0), label=f"{label} ({s['insertion']:.3f})")
        axes[1].plot(x, dele.mean(0), label=f"{label} ({s['deletion']:.3f})")
    for ax, name in zip(axes, ("Insertion", "Deletion")):
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("probability of the class of interest")
        ax.set_title(f"{name} (AUC in legend)")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sweep_plot(plt, store, config, config_id, method, param, number, path):
    values = config.sweeps.get(method, {}).get(param, [])
    pts = [(v, _mean_scores(store, config_id, aggregate_spec(method, **{param: v}).key)) for v in values]
    pts = [(v, s) for v, s in pts if s is not None]
    if not pts:
        return False
    avg = _mean_scores(store, config_id, aggregate_spec("average").key)
    bases = [_mean_scores(store, config_id, base_spec(m).key) for m in BASE_METHODS]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, best in zip(axes, ("insertion", "deletion"), (max, min)):
        ax.plot([v for v, _ in pts], [s[metric] for _, s in pts], "o-", label=PRETTY[method])
        ax.axhline(avg[metric], color="k", ls="--", lw=1, label="Average")
        ax.axhline(best(b[metric] for b in bases), color="gray", ls=":", lw=1, label="best base")
        if method == "var":
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_title(f"{metric} ({'higher' if metric == 'insertion' else 'lower'} is better)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Figure {number}: {PRETTY[method]} hyperparameter sweep (z-score)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _ablation_plot(plt, store, config_id, path):
    from tfagg.experiment.pipeline import base_order

    orders = base_order(store, config_id)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, order in zip(axes, ("insertion", "deletion"), orders):
        for agg in ("average", "ucb"):
            ys = []
            for k in range(1, len(order) + 1):
                s = _mean_scores(store, config_id, aggregate_spec(agg, members=tuple(order[:k])).key)
                ys.append(np.nan if s is None else s[metric])
            ax.plot(range(1, len(order) + 1), ys, "o-", label=PRETTY[agg])
        ax.set_xlabel("ensemble size k (top-k bases by " + metric + ")")
        ax.set_title(metric)
        ax.legend(fontsize=7)
        ax.text(0.02, 0.02, "order: " + ", ".join(PRETTY[m] for m in order), transform=ax.transAxes, fontsize=6)
    fig.suptitle("Figure 11: ensembles of the top-k base attributions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _example_figures(plt, run_dir: Path, config: RunConfig, ensemble_id: str, out: Path):
    from tfagg.aggregate import TABLE1_METHODS
    from tfagg.experiment.maps import build_maps
    from tfagg.experiment.store import load_ensemble
    from tfagg.normalize import normalize

    ex_path = run_dir / "example_image.npz"
    if not ex_path.exists():
        return
    with np.load(ex_path) as z:
        image, image_id = z["image"], str(z["image_id"])
    ens = load_ensemble(run_dir, image_id, BASE_METHODS, ensemble_id)
    if ens is None:
        return
    seed = derive_seed(config.seed, image_id)  # the seed the pipeline used (RBM)

    def show(panels, title, path, per_row=6):
        panels = [("image", None)] + list(panels)
        rows = -(-len(panels) // per_row)
        cols = min(per_row, len(panels))
        fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.2 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (name, m) in zip(axes.ravel(), panels):
            if m is None:
                ax.imshow(np.clip(image, 0, 1))
            else:
                ax.imshow(np.asarray(normalize(m[None], "linear"))[0], cmap="inferno", vmin=0, vmax=1)
            ax.set_title(name, fontsize=8)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    show([(PRETTY[m], ens[i]) for i, m in enumerate(BASE_METHODS)], "Figure 1: base attributions",
         out / "fig01_base_maps.png")
    specs = [aggregate_spec("average", normalization=n) for n in NORMALIZATIONS]
    maps = build_maps(ens, specs, seed=seed)
    show([(n, maps[j]) for j, n in enumerate(NORMALIZATIONS)], "Figure 2: normalisations (average aggregation)",
         out / "fig02_normalizations.png")
    specs = [aggregate_spec(m) for m in TABLE1_METHODS]
    maps = build_maps(ens, specs, seed=seed)
    show([(PRETTY[m], maps[j]) for j, m in enumerate(TABLE1_METHODS)], "Figure 3: aggregations (z-score)",
         out / "fig03_aggregations.png")


def write_report(run_dir) -> Path:
    """Render every table and figure of the run in ``run_dir`` into ``run_dir/report``."""
    from tfagg.experiment.pipeline import DB_FILE, read_run

    run_dir = Path(run_dir)
    config, identity = read_run(run_dir)
    config_id = identity["config_id"]
    store = ResultsStore(run_dir / DB_FILE)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    plt = _plt()
    try:
        if store.count_done(config_id, "phase1") == 0:
            raise FileNotFoundError(f"{run_dir} has no finished images yet for its configuration")
        text = _write_table1(out, table1(store, config, config_id), config)
        _example_figures(plt, run_dir, config, identity["ensemble_id"], out)
        _curve_plot(plt, store, config_id,
                    [(PRETTY[m], base_spec(m).key) for m in BASE_METHODS] + [("Average", aggregate_spec("average").key)],
                    "Figure 4: base attributions and average aggregation", out / "fig04_curves.png")
        for method, param, number in SWEEP_FIGURES:
            _sweep_plot(plt, store, config, config_id, method, param, number, out / f"fig{number:02d}_{method}.png")
        _curve_plot(plt, store, config_id,
                    [(n, aggregate_spec("average", normalization=n).key) for n in NORMALIZATIONS],
                    "Figure 10: normalisations under average aggregation", out / "fig10_normalizations.png")
        if config.ablation and store.count_done(config_id, "ablation"):
            _ablation_plot(plt, store, config_id, out / "fig11_ablation.png")
        (out / "README.md").write_text(text)
    finally:
        store.close()
    return out

"""``tfagg reproduce mahlau2022 ...`` and ``tfagg report DIR``."""
from __future__ import annotations

from pathlib import Path


def _cmd_reproduce(args) -> int:
    from tfagg.experiment.config import preset_config
    from tfagg.experiment.pipeline import run_pipeline
    from tfagg.experiment.report import write_report

    config = preset_config(args.dataset, n_images=args.images, data_dir=args.data_dir, weights=args.weights,
                           seed=args.seed, steps=args.steps, batch_size=args.batch_size)
    out = Path(args.out or f"runs/mahlau2022-{args.dataset}-seed{config.seed}")
    summary = run_pipeline(config, out, allow_config_change=args.allow_config_change, progress=not args.quiet)
    report = write_report(out)
    print(f"run directory: {out}  ({summary.get('seconds', 0):.0f} s)")
    print(f"report: {report}")
    print((report / "table1.md").read_text())
    return 0


def _cmd_report(args) -> int:
    from tfagg.experiment.report import write_report

    report = write_report(args.run_dir)
    print(f"report: {report}")
    print((report / "table1.md").read_text())
    return 0


def add_experiment_commands(sub) -> None:
    p = sub.add_parser("reproduce", help="run a paper's experiments end to end (resumable) and write the report")
    p.add_argument("paper", choices=["mahlau2022"])
    p.add_argument("--dataset", default="synth-signs", choices=["synth-signs", "imagenet", "gtsrb"])
    p.add_argument("--data-dir", default=None, help="imagenet/gtsrb: where the data set lies (see README)")
    p.add_argument("--weights", default=None,
                   help="model: a tfagg model directory, or a torchvision resnet18 .pth/.npz (imagenet)")
    p.add_argument("--images", type=int, default=None, help="number of images (default: preset's)")
    p.add_argument("--steps", type=int, default=None, help="insertion/deletion increments (default: preset's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="run directory (default: runs/mahlau2022-<dataset>-seed<seed>)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="continue in a run directory made with another configuration (rows stay separate)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("report", help="re-render the tables and figures of a run directory from its database")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)

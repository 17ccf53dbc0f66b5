"""Command-line interface: ``tfagg train | convert-weights | reproduce | report``."""
from __future__ import annotations

import argparse
import sys


def _cmd_train(args) -> int:
    from tfagg.models.zoo import load_model, model_dir
    from tfagg.training import train_model

    out = args.out or model_dir(args.preset, args.seed)
    if not args.force:
        try:
            _, card = load_model(out)
            print(f"model already trained: {out} (test accuracy {card['test_accuracy']:.4f}); use --force to retrain")
            return 0
        except FileNotFoundError:
            pass
    _, card = train_model(args.preset, seed=args.seed, out_dir=out, epochs=args.epochs,
                          train_images=args.train_images, data_dir=args.data_dir, progress=not args.quiet)
    print(f"saved {out}")
    print(f"test accuracy: {card['test_accuracy']:.4f} on {card['test_images']} images "
          f"(training took {card['train_seconds']:.0f} s)")
    return 0


def _cmd_convert(args) -> int:
    from tfagg.models.torchvision_weights import load_torchvision_resnet18
    from tfagg.models.zoo import model_dir, save_model

    model = load_torchvision_resnet18(args.checkpoint)
    out = args.out or model_dir("imagenet", 0)
    card = {"preset": "imagenet", "source": str(args.checkpoint), "converted_from": "torchvision resnet18"}
    save_model(model, card, out)
    print(f"saved {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfagg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a ResNet18 preset and cache it")
    p.add_argument("--preset", default="synth-signs", choices=["synth-signs", "gtsrb"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the preset's number of epochs")
    p.add_argument("--train-images", type=int, default=None, help="synth-signs: training images per epoch")
    p.add_argument("--data-dir", default=None, help="gtsrb: folder with the official GTSRB archives or their extracted tree")
    p.add_argument("--out", default=None, help="model directory (default: $TFAGG_HOME/models/<preset>-seed<seed>)")
    p.add_argument("--force", action="store_true", help="retrain even if a trained model is cached")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("convert-weights", help="convert torchvision's resnet18 checkpoint to a Keras model")
    p.add_argument("checkpoint", help="torchvision resnet18 state dict (.pth needs torch; .npz works without)")
    p.add_argument("--out", default=None, help="model directory (default: $TFAGG_HOME/models/imagenet-seed0)")
    p.set_defaults(func=_cmd_convert)

    from tfagg.experiment.cli import add_experiment_commands

    add_experiment_commands(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tfagg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

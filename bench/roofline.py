"""How fast this host could train a recipe at best: its arithmetic against the host's FP32 rate.

    python bench/roofline.py [--recipe fast] [--shape 32,32,3] [--num-train 45000]
                             [--target-seconds 1200] [--name roofline]

A recipe's training is mostly convolutions, so its fit time has a floor: the multiply-adds it
needs divided by the fastest rate this CPU sustains on a large float32 matrix product. The
script computes both, with no dataset:
  1. the recipe's model (trainer.model.build_model) and the multiply-adds of each conv and
     dense layer per image, for the forward pass, the gradient with respect to the layer's
     input (only where a trainable weight lies upstream) and with respect to its kernel (only
     where the kernel trains). TensorFlow's own FLOP counter checks the forward figure.
     BatchNorm, activations and pooling are left out: they only make the floor higher;
  2. the host's rate: the best of a few float32 matrix products (2048 and 4096 square) on all
     cores, bfloat16 too where the CPU has it;
  3. the model's own training step (the trainer's optimizer and loss, random images cached in
     memory, timed as bench/onednn.py times it) at the recipe's batch size, as a share of that
     rate.
It prints and writes bench/results/<name>.json: the floor for `epochs` epochs of `num_train`
images, and how many epochs fit in `target_seconds` at the host's best rate.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import (  # noqa: E402
    git_commit,
    machine_info,
    train_images_per_second,
    write_result,
)

# One copy of the arithmetic and of the timing, in the product (--recipe auto uses them).
from trainer.fit_estimate import layer_macs, training_flops_per_image  # noqa: E402
from trainer.host_speed import matmul_rate  # noqa: E402


def tf_forward_flops(model) -> int | None:
    """TensorFlow's profiler count for one image's forward pass (a check on layer_macs)."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = option_builder.ProfileOptionBuilder(
        option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    profile = model_analyzer.profile(graph, options=options)
    return int(profile.total_float_ops) if profile else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--shape", default="32,32,3", help="image height,width,channels")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=45_000,
                        help="training images per epoch (CIFAR-10 after ingest's eval split)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--target-seconds", type=float, default=1200.0,
                        help="the fit time to compare with (issue 11: a 20-minute Trainer)")
    parser.add_argument("--name", default="roofline")
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends

    import numpy as np

    from trainer.model import bf16_supported, build_model, dtype_policy
    from trainer.recipes import from_recipe

    shape = tuple(int(v) for v in args.shape.split(","))
    classes = [f"class_{i}" for i in range(args.classes)]
    config = from_recipe(args.recipe, shape, classes, epochs=args.epochs)
    # The floor is for float32 arithmetic; the step is timed in the recipe's own precision.
    sample = np.zeros((1, *shape), "float32") if config.uses_whitening else None
    model = build_model(config.override({"runtime.precision": "float32"}), sample)
    rows = layer_macs(model)
    per_image = training_flops_per_image(rows)
    forward = 2 * sum(r["forward_macs"] for r in rows)
    members = config.model.members  # an ensemble's networks train one after the other
    total = per_image * args.num_train * config.optimizer.epochs * members
    networks = f" x {members} networks" if members > 1 else ""
    print(f"{args.recipe} on {args.shape}: {forward / 1e9:.3f} GFLOP forward, "
          f"{per_image / 1e9:.3f} GFLOP per training image; {config.optimizer.epochs} epochs of "
          f"{args.num_train:,} images{networks}: {total / 1e12:.0f} TFLOP", flush=True)
    tf_forward = tf_forward_flops(model)

    rates = {"float32": matmul_rate("float32")}
    if bf16_supported():
        rates["bfloat16"] = matmul_rate("bfloat16")
    for dtype, rate in rates.items():
        print(f"{dtype} matrix product: {rate / 1e9:.0f} GFLOP/s", flush=True)
    step_images = train_images_per_second(config, steps=5)
    step_rate = step_images * per_image
    best = max(rates.values())
    result = {
        "recipe": args.recipe,
        "image_shape": list(shape),
        "num_train": args.num_train,
        "epochs": config.optimizer.epochs,
        "members": members,
        "batch_size": config.optimizer.batch_size,
        "train_step_dtype_policy": dtype_policy(config),
        "layers": rows,
        "forward_gflop_per_image": round(forward / 1e9, 4),
        "forward_gflop_per_image_tf_profiler": round(tf_forward / 1e9, 4) if tf_forward else None,
        "training_gflop_per_image": round(per_image / 1e9, 4),
        "training_tflop_total": round(total / 1e12, 1),
        "matmul_gflops": {k: round(v / 1e9, 1) for k, v in rates.items()},
        "train_step_images_per_second": round(step_images, 1),
        "train_step_gflops": round(step_rate / 1e9, 1),
        "train_step_share_of_matmul_rate": round(step_rate / best, 3),
        "fit_floor_seconds": round(total / best, 1),
        "target_seconds": args.target_seconds,
        "gflops_needed_for_target": round(total / args.target_seconds / 1e9, 1),
        # Epochs of each network.
        "epochs_within_target_at_matmul_rate": round(
            args.target_seconds * best / (per_image * args.num_train * members), 2),
        "machine": machine_info(),
        "commit": commit,
    }
    print(f"training step: {result['train_step_images_per_second']:.0f} images/s = "
          f"{result['train_step_gflops']:.0f} GFLOP/s "
          f"({result['train_step_share_of_matmul_rate']:.0%} of the best matrix-product rate)\n"
          f"fit floor at {best / 1e9:.0f} GFLOP/s: {result['fit_floor_seconds']:.0f} s for "
          f"{config.optimizer.epochs} epochs{networks}; {args.target_seconds:.0f} s needs "
          f"{result['gflops_needed_for_target']:.0f} GFLOP/s, or allows "
          f"{result['epochs_within_target_at_matmul_rate']:.1f} epochs at the best rate")
    write_result(args.name, result)


if __name__ == "__main__":
    main()

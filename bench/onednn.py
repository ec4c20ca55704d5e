"""Training images/s of each recipe's network with TensorFlow's oneDNN CPU kernels off and on.

TensorFlow turns oneDNN on by itself only on CPUs with AVX512-VNNI, AVX512-BF16 or AMX;
`import trainer` turns it on everywhere. This measures what that is worth on the host it runs
on: the recipe's own model, optimizer, loss and batch size on random images of the seeds'
shapes (throughput does not depend on pixel values), in a fresh process per setting because
the option is read once, when TensorFlow loads. Settings alternate, and each is measured
`--repeats` times; the JSON has every measurement and the ratio of medians.

    python bench/onednn.py                       # writes bench/results/onednn.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    git_commit,
    machine_info,
    train_images_per_second,
    write_result,
)

# (recipe, image shape): the seeds' shapes for the recipes `--recipe auto` picks for them.
CASES = {
    "fast-gray": (28, 28, 1),
    "fast": (32, 32, 3),
    "classic": (28, 28, 1),
}


def measure(recipe: str, shape: tuple[int, int, int], steps: int) -> dict:
    """Runs in the child process: trains `steps` batches after a warm-up, returns images/s."""
    from trainer.model import onednn_enabled
    from trainer.recipes import from_recipe

    config = from_recipe(recipe, shape, [str(i) for i in range(10)])
    return {"images_per_second": round(train_images_per_second(config, steps), 1),
            "batch_size": config.optimizer.batch_size, "steps": steps, "onednn": onednn_enabled()}


def run_child(recipe: str, onednn: str, steps: int) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", recipe, "--steps", str(steps)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0,
                        help="batches timed per measurement (default: about 30 s of work)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="onednn", help="results file name under bench/results")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, CASES[args.child], args.steps)))
        return
    commit = git_commit()
    default_steps = {"fast-gray": 30, "fast": 5, "classic": 30}
    results = {}
    for recipe in args.recipes:
        steps = args.steps or default_steps[recipe]
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        for repeat in range(args.repeats):
            for setting, value in (("off", "0"), ("on", "1")):
                result = run_child(recipe, value, steps)
                runs[setting].append(result)
                print(f"{recipe} {CASES[recipe]} oneDNN {setting} (repeat {repeat + 1}): "
                      f"{result['images_per_second']:,.0f} images/s", flush=True)
        medians = {k: statistics.median(r["images_per_second"] for r in v)
                   for k, v in runs.items()}
        results[recipe] = {
            "image_shape": list(CASES[recipe]),
            "batch_size": runs["on"][0]["batch_size"],
            "steps_timed": steps,
            "images_per_second": {k: [r["images_per_second"] for r in v]
                                  for k, v in runs.items()},
            "median_images_per_second": medians,
            "speedup_on_over_off": round(medians["on"] / medians["off"], 2),
        }
        print(f"{recipe}: oneDNN on/off = {results[recipe]['speedup_on_over_off']}x", flush=True)
    write_result(args.name, {
        "what": "training images/s per recipe network, TF_ENABLE_ONEDNN_OPTS=0 vs 1, random "
                "images of the seeds' shapes, one fresh process per measurement",
        "command": "python bench/onednn.py",
        "recipes": results,
        "machine": machine_info(),
        "commit": commit,
    })


if __name__ == "__main__":
    main()

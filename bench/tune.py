"""What a tuning budget buys: the recipe's defaults against the Tuner's best, on MNIST.

    python bench/tune.py                                   # MNIST, fast-gray, 10 minutes
    python bench/tune.py --recipe classic --budget 10 --timing-lock ../test.lock
    python bench/tune.py --limit 300 --budget 0.5 --name tune-smoke   # a smoke run

Without TFX, with the trainer's own code paths (as bench/recipe.py; the splits are ingest's:
eval carved from train/ when the folder has train/ and test/):

1. Trains the recipe's defaults on `train`; its accuracy on `eval` (no test-time augmentation,
   what the Tuner compares).
2. Tunes with the pipeline's Tuner code (trainer/tuning.py make_tuner, the recipe's space, the
   algorithm of --algorithm) for --budget minutes: every trial trains on `train` and is scored
   on `eval`; the budget check refuses a budget too small for one trial first, as `run` does.
3. Trains the best trial's settings (trainer/tuning.py tuned_config, as the Trainer does).
4. Scores both models on `test` once each, with the recipe's test-time augmentation (what
   serving_default computes). The choice of settings used eval only; test is for the reader.
5. Records every trial (settings, eval accuracy, seconds), the stages' wall seconds, the
   machine, the host's matrix-product rate measured in this run (bench/roofline.py
   matmul_rate), the timing lock (held, if given, around everything that is timed) and the
   commit, in bench/results/<name>.json (default tune), paths relative to the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import (  # noqa: E402
    channel_statistics,
    git_commit,
    held,
    load_split,
    machine_info,
    relative,
    sample,
    shared_dataset,
    tta_accuracy,
    write_result,
)

RESULT_NAME = "tune"








def main() -> None:
    from trainer.progress import log_to_stderr

    log_to_stderr()  # train()'s and the tuner's progress lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="an image folder of train/ and test/ "
                        "(default: the shared MNIST)")
    parser.add_argument("--recipe", default="fast-gray",
                        help="a scratch recipe (default %(default)s)")
    parser.add_argument("--budget", type=float, default=10.0, help="tuning minutes")
    parser.add_argument("--algorithm", default="random", choices=("random", "hyperband"))
    parser.add_argument("--limit", type=int, help="a seeded sample of N images per split "
                        "(smoke runs)")
    parser.add_argument("--timing-lock", type=Path, help="a lock file held while timing")
    parser.add_argument("--roofline-tries", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--name", default=RESULT_NAME)
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends

    import tensorflow as tf

    from bench.roofline import matmul_rate
    from ingest.dataset import EVAL, TEST, TRAIN, discover
    from ingest.imageinfo import image_shape
    from trainer.data import in_memory_inputs
    from trainer.recipes import from_recipe
    from trainer.train import train
    from trainer.tuning import check_budget, make_tuner, tuned_config

    work = args.work_dir.resolve()
    root = (args.data or shared_dataset(work, "mnist")).resolve()
    class_names, splits, _ = discover(root)
    shape = image_shape(Path(splits[TRAIN][0][0]).read_bytes())
    config = from_recipe(args.recipe, shape, class_names, {
        "tuning.budget_minutes": args.budget, "tuning.algorithm": args.algorithm})
    if config.model.kind == "transfer":
        raise SystemExit("bench/tune.py measures the scratch recipes (the transfer recipe's "
                         "trials need the Transform graph's features: run the pipeline)")
    stages: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(name: str):
        start = time.monotonic()
        try:
            yield
        finally:
            stages[name] = round(time.monotonic() - start, 2)

    with held(args.timing_lock):
        with stage("roofline"):
            rate = matmul_rate("float32", tries=args.roofline_tries)
        print(f"matrix-product rate: float32 {rate / 1e9:.0f} GFLOP/s", flush=True)
        with stage("load"):
            train_raw = load_split(sample(splits[TRAIN], args.limit, 1), shape)
            mean, std = channel_statistics(train_raw, shape[2])

            def standardize(dataset):
                return dataset.map(lambda x, y: ((x - mean) / std, tf.cast(y, tf.int64))).cache()

            eval_data = standardize(load_split(sample(splits[EVAL], args.limit, 2), shape))
            test_data = standardize(load_split(sample(splits[TEST], args.limit, 3), shape))
            inputs = in_memory_inputs(standardize(train_raw), eval_data)
        estimate = check_budget(config, inputs.num_train, inputs.num_eval)
        with stage("defaults"):
            default_model, default_record = train(config, inputs)
        with stage("tuning"):
            tuner = make_tuner(config, lambda trial: train(trial, inputs)[1],
                               str(work / "tune-trials"), estimate)
            tuner.search(verbose=0)
            record = tuner.record()
        best = record.best()
        if best is None:
            raise SystemExit("no trial completed")
        tuned = tuned_config(config, best.settings)
        with stage("tuned"):
            tuned_model, tuned_record = train(tuned, inputs)
        # Test, once per model, after every choice was made on eval.
        with stage("test"):
            default_test = tta_accuracy(default_model, test_data, config)
            tuned_test = tta_accuracy(tuned_model, test_data, tuned)
    result = {
        "what": f"{args.recipe}'s defaults against the best of a {args.budget:g}-minute "
                f"{args.algorithm} search (trials scored on eval), both scored on test once",
        "commit": commit,
        "tree_clean": bool(commit) and not commit.endswith("-dirty"),
        "machine": machine_info(),
        "matmul_gflops": {"float32": round(rate / 1e9, 1)},
        "timing_lock": relative(args.timing_lock) if args.timing_lock else None,
        "data": relative(root),
        "splits": "train/ and test/; eval carved from train/ (10 %)",
        "limit": args.limit,
        "split_counts": {"train": inputs.num_train, "eval": inputs.num_eval,
                         "test": sum(1 for _ in test_data)},
        "recipe": args.recipe,
        "budget_minutes": args.budget,
        "defaults": {
            "settings": record.defaults,
            "eval_accuracy": default_record["final_eval_accuracy"],
            "fit_seconds": default_record["fit_seconds"],
            "test_accuracy": default_test,
        },
        "tuning": record.to_data(),
        "tuned": {
            "settings": best.settings,
            "eval_accuracy": tuned_record["final_eval_accuracy"],
            "fit_seconds": tuned_record["fit_seconds"],
            "test_accuracy": tuned_test,
        },
        "eval_gain": round(tuned_record["final_eval_accuracy"]
                           - default_record["final_eval_accuracy"], 4),
        "test_gain": round(tuned_test - default_test, 4),
        "stage_seconds": stages,
    }
    print(f"defaults: eval {default_record['final_eval_accuracy']:.4f}, test {default_test:.4f}"
          f"\ntuned ({len(record.trials)} trials in {record.seconds:.0f}s, {record.stopped}): "
          f"{best.settings}: eval {tuned_record['final_eval_accuracy']:.4f}, "
          f"test {tuned_test:.4f}")
    write_result(args.name, result)


if __name__ == "__main__":
    main()

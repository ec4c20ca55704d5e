"""Past one machine's memory: CIFAR-10 at 128x128 through the pipeline, streamed and cached.

    python bench/scale.py                  # writes bench/results/scale.json

On this machine, from CIFAR-10's JPEGs in ../shared/datasets:
  1. A folder whose test/ is CIFAR-10's 50,000 training images and whose train/ its 10,000
     test images, so that the Evaluator scores 50,000 test images and the Trainer fits 9,000
     (1,000 carved for eval). `ingest --resize 128x128` keeps the bytes; Transform resizes in
     its graph, so decoded values fall between 8-bit levels and the Trainer stores float32:
     196,608 bytes an image, 60,000 images = 11.8 GB.
  2. `run` with `--cache-budget 512MiB`: the 1.97 GB of train + eval images do not fit, the
     Trainer streams with a 2,730-image shuffle buffer.
  3. `run` again with `--cache-budget 8GiB`, in the same root (ExampleGen, statistics and
     Transform come from TFX's cache) into another serving dir: cached in memory.
     Both train the same small network (`--set`) for the same epochs: images/s, streamed /
     cached, and test accuracy after those epochs.
  4. The same folder at 32x32 (no --resize): the in-memory path stores uint8. Then the
     Trainer's code on that run's artifacts, one epoch each, uint8 cache vs the float32 cache
     it used before (`transformed_examples`), the same network: images/s of each.
  5. Step 2's data in a fresh root with `--beam direct-multi` (Beam worker processes,
     one per core): StatisticsGen, Transform and Evaluator seconds against step 2's in-process
     ones (the Evaluator's model differs: one epoch instead of the same network's three).
For each `run`: wall time, seconds and peak RSS of each component (the RSS of the run's process
and its descendants, such as Beam's workers, sampled from /proc every 0.2 s while the component
runs; memory a component inherits from the ones before it counts too, so these are upper
bounds), the Trainer's input plan and images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CIFAR_TARBALL,
    REPO,
    cifar10_folder,
    git_commit,
    machine_info,
    relative,
    write_result,
)

RESULT_NAME = "scale"
TARGETS = {"max_trainer_peak_rss_gib": 6.0, "min_streamed_over_cached": 0.7}
# A network a few CPU cores train at 128x128 in minutes: the fast recipe's blocks narrower,
# whitening at stride 2 (64x64 after the first layer), no test-time augmentation (the
# Evaluator's 50,000 images are scored once each).
SMALL_NET = ["--recipe", "fast", "--set", "widths=16,32,64", "--set", "whiten_stride=2",
             "--set", "tta_flip=false", "--set", "tta_translate=0", "--set", "validation_freq=1"]
_PROGRESS = re.compile(r"^\[pipeline\] (\S+): (running|done)")


def swapped_folder(cifar: Path, work: Path) -> Path:
    """train/ -> CIFAR's test/ (10,000), test/ -> CIFAR's train/ (50,000), as symlinks."""
    folder = work / "cifar10-swapped"
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in (("train", cifar / "test"), ("test", cifar / "train")):
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(target.resolve(), target_is_directory=True)
    return folder


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return children


def tree_rss_bytes(pid: int) -> int:
    """RSS of the process and its descendants (Beam's worker processes with direct-multi)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _rss_bytes(current)
        todo.extend(_children(current))
    return total


def run_pipeline(name: str, args: list[str], work: Path) -> dict:
    """`python -m pipeline run ARGS --json`: wall time, per-component seconds and peak RSS."""
    command = [sys.executable, "-m", "pipeline", "run", "--json", *args]
    print("$", " ".join(command), flush=True)
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1)
    current = {"name": "(ingest, before the components)"}
    peaks: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = tree_rss_bytes(process.pid)
            peaks[current["name"]] = max(peaks.get(current["name"], 0), rss)
            time.sleep(0.2)

    def follow() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            sys.stderr.write(line)
            match = _PROGRESS.match(line)
            if match:
                current["name"] = match.group(1) if match.group(2) == "running" else "(between)"

    threads = [threading.Thread(target=sample, daemon=True),
               threading.Thread(target=follow, daemon=True)]
    for thread in threads:
        thread.start()
    assert process.stdout is not None
    stdout = process.stdout.read()
    process.wait()
    done.set()
    for thread in threads:
        thread.join(timeout=5)
    seconds = time.monotonic() - start
    if process.returncode != 0:
        raise SystemExit(f"{name}: pipeline run failed with exit code {process.returncode}")
    summary = json.loads(stdout[stdout.index("{"):])
    record = json.loads((Path(summary["tensorboard_dir"]) / "history.json").read_text())
    components = {c["name"]: {"seconds": round(c["seconds"], 1), "state": c["state"]}
                  for c in summary["components"]}
    for component, peak in peaks.items():
        components.setdefault(component, {})["peak_rss_gib"] = round(peak / 2**30, 2)
    return {
        "command": " ".join(["python", "-m", "pipeline", "run", *(
            relative(a) if a.startswith(str(work)) else a for a in args)]),
        "wall_seconds": round(seconds, 1),
        "components": components,
        "input": record.get("input"),
        "num_train": record["num_train"],
        "num_eval": record["num_eval"],
        "epochs": len(record["history"].get("loss", [])),
        "fit_seconds": record["fit_seconds"],
        "train_images_per_second": record["train_images_per_second"],
        "eval_accuracy": record["final_eval_accuracy"],
        "test_accuracy": summary["accuracy"],
        "test_examples": summary["eval_examples"],
        "summary": {k: summary[k] for k in ("evaluation_split", "blessed", "pushed")},
        "_model_run": summary["tensorboard_dir"],
        "_examples": summary["examples_uri"],
    }


def compare_in_memory(root: Path, pipeline_name: str, epochs: int) -> dict:
    """The Trainer's code on a run's artifacts: uint8 cache vs the float32 cache, same network."""
    import glob

    import tensorflow_transform as tft

    from trainer import data
    from trainer.config import TrainerConfig
    from trainer.record import TrainingRecord
    from trainer.train import train

    base = root / "pipelines" / pipeline_name
    transform = sorted(glob.glob(str(base / "Transform" / "transform_graph" / "*")),
                       key=lambda p: int(Path(p).name))[-1]
    examples = sorted(glob.glob(str(base / "ImportExampleGen" / "examples" / "*")),
                      key=lambda p: int(Path(p).name))[-1]
    train_files = [os.path.join(examples, "Split-train", "*")]
    eval_files = [os.path.join(examples, "Split-eval", "*")]
    model_run = next(path.parent for path in (base / "Trainer" / "model_run").glob(
        f"*/{TrainingRecord.FILE}"))
    config = TrainerConfig.from_dict(TrainingRecord.read(model_run).config).override(
        {"optimizer.epochs": epochs})
    output = tft.TFTransformOutput(transform)
    accessor = data.tf_example_accessor()
    results = {}
    for how in ("float32", "uint8"):
        if how == "uint8":
            inputs = data.training_inputs(train_files, eval_files, accessor, output, config)
        else:
            inputs = data.in_memory_inputs(
                data.transformed_examples(train_files, accessor, output),
                data.transformed_examples(eval_files, accessor, output))
        _, trained = train(config, inputs)
        results[how] = {"input": trained["input"],
                        "train_images_per_second": trained["train_images_per_second"],
                        "fit_seconds": trained["fit_seconds"]}
        print(f"32x32 in memory, {how}: {trained['train_images_per_second']} images/s",
              flush=True)
    return {
        "what": f"trainer.train on the 32x32 run's artifacts, {epochs} epoch(s) each, "
                f"config of that run ({config.recipe}, widths {list(config.model.widths)})",
        "runs": results,
        "uint8_over_float32": round(results["uint8"]["train_images_per_second"]
                                    / results["float32"]["train_images_per_second"], 3),
    }


def main() -> None:
    from trainer.progress import log_to_stderr

    log_to_stderr()  # train()'s progress lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--stream-budget", default="512MiB")
    parser.add_argument("--cache-budget", default="8GiB")
    args = parser.parse_args()
    commit = git_commit()
    work = args.work_dir.resolve()
    folder = swapped_folder(cifar10_folder(work), work)
    scale = work / "scale"
    shutil.rmtree(scale, ignore_errors=True)
    root = scale / "root-128"
    common = ["--data", str(folder), "--resize", "128x128", "--root", str(root),
              "--pipeline-name", "scale-128", "--epochs", str(args.epochs), *SMALL_NET]
    result = {
        "what": __doc__.split("\n\n")[0],
        "source": f"{relative(CIFAR_TARBALL)}, train/ and test/ swapped (test = 50,000 images)",
        "commit": commit,
        "machine": machine_info(),
        "targets": TARGETS,
    }
    runs = {}
    runs["streamed_128"] = run_pipeline("streamed_128", [
        *common, "--cache-budget", args.stream_budget,
        "--serving-dir", str(scale / "serving-streamed")], work)
    runs["cached_128"] = run_pipeline("cached_128", [
        *common, "--cache-budget", args.cache_budget,
        "--serving-dir", str(scale / "serving-cached")], work)
    runs["cached_32"] = run_pipeline("cached_32", [
        "--data", str(folder), "--root", str(scale / "root-32"), "--pipeline-name", "scale-32",
        "--epochs", "1", *SMALL_NET[:2], "--set", "tta_flip=false", "--set", "tta_translate=0",
        "--serving-dir", str(scale / "serving-32")], work)
    for run in runs.values():
        run.pop("_model_run"), run.pop("_examples")
    result["runs"] = runs
    streamed, cached = runs["streamed_128"], runs["cached_128"]
    trainer_peak = streamed["components"]["Trainer"]["peak_rss_gib"]
    ratio = streamed["train_images_per_second"] / cached["train_images_per_second"]
    result["findings"] = {
        "trainer_peak_rss_gib_streamed": trainer_peak,
        "trainer_peak_rss_gib_cached": cached["components"]["Trainer"]["peak_rss_gib"],
        "streamed_over_cached_images_per_second": round(ratio, 3),
        "test_accuracy_streamed": streamed["test_accuracy"],
        "test_accuracy_cached": cached["test_accuracy"],
        "evaluator_seconds": streamed["components"]["Evaluator"]["seconds"],
        "evaluator_peak_rss_gib": streamed["components"]["Evaluator"]["peak_rss_gib"],
        "evaluator_test_examples": streamed["test_examples"],
        "met": {"trainer_peak_rss": trainer_peak <= TARGETS["max_trainer_peak_rss_gib"],
                "streamed_over_cached": ratio >= TARGETS["min_streamed_over_cached"]},
    }
    write_result(RESULT_NAME, result)
    result["in_memory_32"] = compare_in_memory(scale / "root-32", "scale-32", epochs=1)
    write_result(RESULT_NAME, result)
    # Beam in worker processes against in-process, on the same 128x128 data (a fresh root, so
    # StatisticsGen and Transform run again; one epoch: the Trainer is not compared).
    multi = run_pipeline("direct_multi_128", [
        "--data", str(folder), "--resize", "128x128", "--root", str(scale / "root-128-multi"),
        "--pipeline-name", "scale-128", "--epochs", "1", *SMALL_NET,
        "--beam", "direct-multi", "--cache-budget", args.stream_budget,
        "--serving-dir", str(scale / "serving-multi")], work)
    multi.pop("_model_run"), multi.pop("_examples")
    runs["direct_multi_128"] = multi
    result["beam_direct_multi"] = {
        component: {
            "in_process_seconds": streamed["components"][component]["seconds"],
            "direct_multi_seconds": multi["components"][component]["seconds"],
            "in_process_peak_rss_gib": streamed["components"][component].get("peak_rss_gib"),
            "direct_multi_peak_rss_gib": multi["components"][component].get("peak_rss_gib"),
        }
        for component in ("StatisticsGen", "Transform", "Evaluator")
    }
    write_result(RESULT_NAME, result)
    print(json.dumps({k: result[k] for k in ("findings", "in_memory_32", "beam_direct_multi")},
                     indent=2))


if __name__ == "__main__":
    main()

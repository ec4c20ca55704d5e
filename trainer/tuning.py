"""TFX's Tuner stage: KerasTuner searches a small recipe-specific space with our own training.

`tuner_fn` (referenced by module path, `trainer.tuning.tuner_fn`) returns a KerasTuner
`RecipeTuner` whose every trial applies its hyperparameters to the TrainerConfig through the
one override path (`TrainerConfig.override`, by dotted path: each hyperparameter is named by
the setting it sets), trains with the project's own training function on `train`
(trainer/train.py `train`, trainer/transfer.py `train_transfer`) and scores the result on
`eval`: the objective is eval accuracy (`val_accuracy`, max). The test split is never read.

The space (`search_space`), by the recipe's model kind:
  classic   optimizer.learning_rate (log, 1/4x..4x the recipe's), model.base_filters
            (1/2x, 1x, 2x), optimizer.epochs (an upper bound: early stopping)
  fast      optimizer.learning_rate (log, 1/3x..3x), model.widths (0.75x, 1x, 1.25x the
            recipe's channels), optimizer.epochs (0.6x..1.6x)
  transfer  model.dropout (the head's, 0..0.5), model.fine_tune_blocks (0..the backbone's
            fine-tunable blocks, at most 6), optimizer.learning_rate (log, 1/3x..3x)
Hyperband decides the epochs itself (`tuner/epochs`, up to the largest epochs of the space;
read as optimizer.epochs), so its space has no epochs.

TFX writes the best trial's hyperparameters (`best_hyperparameters`, KerasTuner's
HyperParameters config) and hands them to the Trainer, whose run_fn applies them with
`tuned_config`, the same path, so its recorded config holds the tuned values. Every trial,
with its settings, eval accuracy and seconds, is the `TuningRecord` (tuning.json) that the
Tuner (components/tuner.py) writes into its `tuner_results` artifact.

Trials run one after another in this process; where Beam runs on worker processes, TFX's
TuneArgs ask for trials side by side, and each then trains in `python -m trainer.tuning_worker`
with its share of the cores and of the cache budget (components/tuner.py sets `parallel`);
the first trial that fails ends the others' processes.

tuner_fn refuses a config with tuning off (on Kubeflow the Tuner exists when compiled with
--tune, and the trainer-config is a run-time parameter); run_fn warns (`warn_untuned`) when a
config asks for tuning but no Tuner ran.

`tuning.budget_minutes` stops the search before a trial that would overrun it (estimated as
the longest trial so far); `check_budget` refuses, before anything trains, a budget smaller
than an estimate of one trial (the rates measured by bench/ on a 2-core CPU, scaled by pixels).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from schema.errors import BadInput, Setting
from schema.records import Record
from trainer.config import ModelKind, TrainerConfig, TuneAlgorithm, parse_settings

log = logging.getLogger(__name__)

# In the Tuner's tuner_results artifact, beside TFX's tuner_results.json.
TUNING_FILE = "tuning.json"
OBJECTIVE = "val_accuracy"
# Hyperband's epochs: the Trainer's optimizer.epochs.
HYPERBAND_EPOCHS = "tuner/epochs"
# Trials of a search bounded by its budget alone.
BUDGET_ONLY_TRIALS = 100
# A trial in its own process, for trials side by side (`run --beam direct-multi`).
WORKER_MODULE = "trainer.tuning_worker"
# What that process hands back, in a temporary folder of the Tuner's.
TRIAL_RESULT_FILE = "trial_result.json"


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One setting searched: its dotted path and its range or choices."""

    path: str
    low: float | None = None
    high: float | None = None
    log_scale: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    integer: bool = False

    def text(self) -> str:
        if self.choices:
            return f"{self.path} in {list(self.choices)}"
        return f"{self.path} in [{self.low:g}, {self.high:g}]{' (log)' if self.log_scale else ''}"

    def declare(self, hp) -> None:
        """The hyperparameter in KerasTuner's HyperParameters, named by the setting's path."""
        if self.choices:
            hp.Choice(self.path, list(self.choices), ordered=False)
        elif self.integer:
            hp.Int(self.path, int(self.low), int(self.high))
        else:
            hp.Float(self.path, self.low, self.high, step=self.step,
                     sampling="log" if self.log_scale else "linear")


def _widths(widths: tuple[int, ...], scale: float) -> str:
    """Channels scaled (multiples of 8, at least 8), as `--set model.widths=` reads them."""
    return ",".join(str(max(8, round(w * scale / 8) * 8)) for w in widths)


def _epochs(epochs: int, low: float, high: float) -> Dimension:
    return Dimension("optimizer.epochs", low=max(1, round(epochs * low)),
                     high=max(2, round(epochs * high)), integer=True)


def search_space(config: TrainerConfig) -> list[Dimension]:
    """The settings searched for this config's recipe (its model kind), around its values."""
    model, opt = config.model, config.optimizer
    rate = opt.learning_rate
    if model.kind == ModelKind.TRANSFER:
        from trainer.backbones.registry import get

        space = [Dimension("model.dropout", low=0.0, high=0.5, step=0.1)]
        blocks = min(6, get(model.backbone).fine_tunable_blocks)
        if blocks:
            space.append(Dimension("model.fine_tune_blocks", low=0, high=blocks, integer=True))
        return [*space, Dimension("optimizer.learning_rate", low=rate / 3, high=rate * 3,
                                  log_scale=True)]
    if model.kind == ModelKind.FAST:
        scales = (0.75, 1.0, 1.25)
        return [Dimension("optimizer.learning_rate", low=rate / 3, high=rate * 3, log_scale=True),
                Dimension("model.widths",
                          choices=tuple(dict.fromkeys(_widths(model.widths, s) for s in scales))),
                _epochs(opt.epochs, 0.6, 1.6)]
    filters = model.base_filters
    return [Dimension("optimizer.learning_rate", low=rate / 4, high=rate * 4, log_scale=True),
            Dimension("model.base_filters",
                      choices=tuple(dict.fromkeys(max(4, round(filters * s))
                                                  for s in (0.5, 1, 2)))),
            _epochs(opt.epochs, 0.5, 1.5)]


def searched(config: TrainerConfig) -> list[Dimension]:
    """The space the config's algorithm searches: Hyperband sets the epochs itself."""
    space = search_space(config)
    if config.tuning.algorithm == TuneAlgorithm.HYPERBAND:
        return [d for d in space if d.path != "optimizer.epochs"]
    return space


def max_epochs(config: TrainerConfig) -> int:
    """The most epochs a trial trains: the epochs dimension's top, else the recipe's."""
    top = [d.high for d in search_space(config) if d.path == "optimizer.epochs"]
    return int(top[0]) if top else max(1, config.optimizer.epochs)


def _changes(values: Mapping[str, Any]) -> dict[str, Any]:
    """KerasTuner's values as typed settings by dotted path (Hyperband's epochs included)."""
    pairs = []
    for name, value in values.items():
        if name == HYPERBAND_EPOCHS:
            name = "optimizer.epochs"
        elif name.startswith("tuner/"):
            continue  # Hyperband's bookkeeping (bracket, round, initial epoch)
        if isinstance(value, (list, tuple)):  # a record's JSON value (model.widths)
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = str(value).lower()
        pairs.append(f"{name}={value}")
    return parse_settings(pairs)


def tuned_config(config: TrainerConfig, hyperparameters: Mapping[str, Any] | None
                 ) -> TrainerConfig:
    """`config` with a trial's hyperparameters applied: KerasTuner's values by name, its
    HyperParameters config (`{"space": ..., "values": ...}`, TFX's best_hyperparameters), or a
    TrialRecord's settings (JSON values: model.widths as a list).
    """
    if not hyperparameters:
        return config
    values = hyperparameters.get("values", hyperparameters)
    return config.override(_changes(values))


def warn_untuned(config: TrainerConfig, hyperparameters: Mapping[str, Any] | None) -> bool:
    """Logs a warning, and returns True, when the config asks for tuning but no Tuner ran: on
    Kubeflow a run-time trainer-config with tuning.* set for a pipeline compiled without --tune
    (compile time decides whether the Tuner exists). The Trainer then trains the config as is.
    """
    if not config.tuning.enabled or hyperparameters:
        return False
    log.warning("warning: the training config sets tuning (trials %d, budget %g min), but this "
                "pipeline has no Tuner (it was compiled with tuning off): the Trainer trains "
                "the config's own settings; compile the pipeline with tuning on to search",
                config.tuning.trials, config.tuning.budget_minutes)
    return True


def applied(config: TrainerConfig, values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a trial set, as the config holds them (JSON values, by dotted path)."""
    settings = config.settings()
    return {path: settings[path] for path in _changes(values)}


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial: the settings it trained with, its eval accuracy and how long it took."""

    trial: str
    settings: dict[str, Any]
    eval_accuracy: float | None = None
    seconds: float = 0.0
    epochs_run: int | None = None


@dataclasses.dataclass(frozen=True)
class TuningRecord(Record):
    """The Tuner's search (tuning.json in its tuner_results artifact)."""

    FILE = TUNING_FILE

    algorithm: str
    # The recipe and its values of the searched settings (what the trials are compared with).
    recipe: str
    defaults: dict[str, Any]
    space: tuple[str, ...]
    max_trials: int
    budget_minutes: float = 0.0
    objective: str = OBJECTIVE
    split: str = "eval"
    trials: tuple[TrialRecord, ...] = ()
    best_trial: str | None = None
    seconds: float = 0.0
    # Why the search ended: all trials run, the budget, or the space exhausted.
    stopped: str = ""
    # How check_budget estimated one trial before the search.
    estimate: str = ""

    def best(self) -> TrialRecord | None:
        return next((t for t in self.trials if t.trial == self.best_trial), None)

    def tied_with_best(self) -> list[TrialRecord]:
        """The other trials whose eval accuracy equals the best's: on a small eval split
        several settings score the same, and the oracle's pick among them is the first found.
        """
        best = self.best()
        if best is None or best.eval_accuracy is None:
            return []
        return [t for t in self.trials
                if t.trial != best.trial and t.eval_accuracy == best.eval_accuracy]


@dataclasses.dataclass(frozen=True)
class TrialResult(Record):
    """A trial's outcome, from the process that trained it (trainer/tuning_worker.py)."""

    FILE = TRIAL_RESULT_FILE

    eval_accuracy: float
    epochs_run: int = 0


def _tuner_class():
    """RecipeTuner, made when KerasTuner is imported (the CLI imports this module without it)."""
    from keras_tuner import errors
    from keras_tuner.engine import base_tuner

    class RecipeTuner(base_tuner.BaseTuner):
        """Trials through `train_trial` (a config -> its training record), not model.fit."""

        def __init__(self, oracle, config: TrainerConfig,
                     train_trial: Callable[[TrainerConfig], dict], estimate: str = "",
                     **kwargs) -> None:
            super().__init__(oracle=oracle, hypermodel=None, **kwargs)
            self.config = config
            self.train_trial = train_trial
            self.estimate = estimate
            self.trials: list[TrialRecord] = []
            self.stopped = ""
            self._error: BaseException | None = None
            self._start = 0.0
            self._budget = config.tuning.budget_minutes * 60
            # Trials side by side, each in its own process (set by components/tuner.py).
            self.parallel = 1
            self.trial_inputs: TrialInputs | None = None

        def on_search_begin(self) -> None:
            self._start = time.monotonic()

        def pre_create_trial(self) -> None:
            if not (self._budget and self.trials):
                return
            elapsed = time.monotonic() - self._start
            longest = max(t.seconds for t in self.trials)
            if elapsed + longest > self._budget:
                self.stopped = (f"budget: {elapsed:.0f}s of {self._budget:.0f}s spent, and the "
                                f"next trial (about {longest:.0f}s, the longest so far) would "
                                "overrun it")
                self.oracle.max_trials = len(self.oracle.trials)

        def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
            values = dict(trial.hyperparameters.values)
            try:
                config = tuned_config(self.config, values)
                settings = applied(config, values)
                number = trial.trial_id
                log.info("[tuner] trial %s: %s", number, settings_text(settings))
                start = time.monotonic()
                record = self.train_trial(config)
                seconds = time.monotonic() - start
            except Exception as e:
                # KerasTuner would retry or skip: a failure here is ours. The first one: the
                # siblings ended because of it fail after it.
                if self._error is None:
                    self._error = e
                raise errors.FatalError(f"{e.__class__.__name__}: {e}") from e
            accuracy = float(record["final_eval_accuracy"])
            self.trials.append(TrialRecord(
                trial=trial.trial_id, settings=settings, eval_accuracy=round(accuracy, 6),
                seconds=round(seconds, 2), epochs_run=record.get("epochs_run") or len(
                    record.get("history", {}).get("loss", [])) or None))
            log.info("[tuner] trial %s: eval accuracy %.4f in %.0fs", number, accuracy, seconds)
            return {OBJECTIVE: accuracy}

        def search(self, *args, **kwargs) -> None:
            try:
                if self.parallel > 1 and self.trial_inputs is not None:
                    self._search_parallel()
                else:
                    super().search(*args, **kwargs)
            except errors.FatalError:
                if self._error is not None:
                    raise self._error from None
                raise
            if not self.stopped:
                run = f"{len(self.trials)} trial(s) run"
                self.stopped = (run if len(self.trials) >= (self.oracle.max_trials or 0) else
                                f"{run}: {self.config.tuning.algorithm} had no more to try")

        def _search_parallel(self) -> None:
            """Up to `parallel` trials at a time, each trained in a fresh process with its share
            of the cores; the oracle is asked for the next trial as each one ends.
            """
            import concurrent.futures as futures

            from keras_tuner.engine import trial as trial_module

            from trainer import memory

            threads = max(1, usable_cpus() // self.parallel)
            # Each process its share of the cache budget: N at once, each with the whole of
            # "50%" of the memory, would ask for N halves.
            share = max(1, memory.resolve_budget(self.config.data.cache_budget) // self.parallel)
            processes = TrialProcesses()
            self.train_trial = process_trainer(self.trial_inputs, threads, str(share), processes)
            log.info("[tuner] up to %d trials at a time, each in its own process on %d "
                     "thread(s) with a cache budget of %s", self.parallel, threads,
                     memory.human(share))
            self.on_search_begin()
            free = [f"tuner{i}" for i in range(self.parallel)]
            running: dict[futures.Future, tuple[Any, str]] = {}
            stopped = False
            pool = futures.ThreadPoolExecutor(self.parallel)
            try:
                while True:
                    while free and not stopped:
                        self.pre_create_trial()
                        trial = self.oracle.create_trial(free[-1])
                        if trial.status == trial_module.TrialStatus.STOPPED:
                            stopped = True
                        elif trial.status == trial_module.TrialStatus.IDLE:
                            break  # Hyperband waits for a running trial's result
                        else:
                            running[pool.submit(self.run_trial, trial)] = (trial, free.pop())
                    if not running:
                        break
                    done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                    for future in done:
                        trial, slot = running.pop(future)
                        self.oracle.update_trial(trial.trial_id, future.result())
                        trial.status = trial_module.TrialStatus.COMPLETED
                        self.oracle.end_trial(trial)
                        free.append(slot)
            except BaseException:
                # A failed trial (or Ctrl-C) ends the search now: its siblings' processes too.
                processes.stop()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            self.on_search_end()

        def save_model(self, trial_id, model, step=0) -> None:
            pass  # the Trainer trains the best settings again; no trial's model is kept

        def record(self) -> TuningRecord:
            # The oracle's best: the trial whose hyperparameters TFX hands the Trainer.
            best = self.oracle.get_best_trials(1)
            tuning = self.config.tuning
            space = searched(self.config)
            settings = self.config.settings()
            defaults = {d.path: settings[d.path] for d in search_space(self.config)}
            return TuningRecord(
                algorithm=str(tuning.algorithm), recipe=self.config.recipe, defaults=defaults,
                space=tuple(d.text() for d in space), max_trials=max_trials(self.config),
                budget_minutes=tuning.budget_minutes, trials=tuple(self.trials),
                best_trial=best[0].trial_id if best else None,
                seconds=round(time.monotonic() - self._start, 2), stopped=self.stopped,
                estimate=self.estimate)

    return RecipeTuner


def max_trials(config: TrainerConfig) -> int:
    return config.tuning.trials or BUDGET_ONLY_TRIALS


def make_tuner(config: TrainerConfig, train_trial: Callable[[TrainerConfig], dict],
               directory: str, estimate: str = ""):
    """The RecipeTuner of the config's algorithm over its recipe's space."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for dimension in searched(config):
        dimension.declare(hp)
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    seed = config.runtime.seed
    if config.tuning.algorithm == TuneAlgorithm.HYPERBAND:
        oracle = keras_tuner.oracles.HyperbandOracle(
            objective=objective, max_epochs=max_epochs(config), factor=3, hyperparameters=hp,
            seed=seed)
        oracle.max_trials = max_trials(config)
    else:
        oracle = keras_tuner.oracles.RandomSearchOracle(
            objective=objective, max_trials=max_trials(config), hyperparameters=hp, seed=seed)
    # KerasTuner's own progress display prints to stdout (where `run --json` writes): off; the
    # trials' lines are logged instead.
    oracle.verbose = 0
    return _tuner_class()(oracle, config, train_trial, estimate=estimate, directory=directory,
                          project_name="tuning", overwrite=True)


# Training rates measured by bench/ on a 2-core AMD EPYC (float32 unless said), images per
# second per epoch at the shape given: an estimate of one trial before the search, scaled by
# pixels. On a faster machine a trial takes less, so the estimate errs towards letting a
# budget through; the search itself then stops before a trial that would overrun it.
_RATES: dict[str, tuple[float, tuple[int, int], str]] = {
    "classic": (376.0, (28, 28), "bench/results/onednn.json (classic, 28x28)"),
    "fast-gray": (4316.6, (28, 28),
                  "bench/results/recipe-mnist-fast-gray-float32-bf16host.json (28x28)"),
    "fast": (199.7, (32, 32), "bench/results/recipe-fast-10ep.json (fast, 32x32)"),
}
# transfer (sign-digits at 224x224, bench/results/transfer.json): features of each image once,
# then fine-tuning on them.
_TRANSFER_FEATURES = (64.3, (224, 224))
_TRANSFER_FINE_TUNE = (150.1, (224, 224))
_TRANSFER_SOURCE = "bench/results/transfer.json (sign-digits, 224x224)"


def _scaled(rate: float, shape: tuple[int, int], image_shape) -> float:
    return rate * (shape[0] * shape[1]) / (int(image_shape[0]) * int(image_shape[1]))


def trial_estimate(config: TrainerConfig, num_train: int, num_eval: int) -> tuple[float, str]:
    """Seconds the shortest trial of the space takes at least about, and how that was worked
    out (for the refusal's message and the record).
    """
    space = {d.path: d for d in searched(config)}
    epochs = int(space["optimizer.epochs"].low) if "optimizer.epochs" in space else (
        1 if config.tuning.algorithm == TuneAlgorithm.HYPERBAND else config.optimizer.epochs)
    side = f"{config.image_shape[0]}x{config.image_shape[1]}"
    if config.model.kind == ModelKind.TRANSFER:
        features = _scaled(*_TRANSFER_FEATURES, config.image_shape)
        seconds = (num_train + num_eval) / features
        return seconds, (f"{num_train + num_eval:,} train and eval images through the backbone "
                         f"once at about {features:.0f} images/s ({_TRANSFER_SOURCE} on a "
                         f"2-core CPU, scaled to {side}); fine-tuning not counted")
    key = config.recipe if config.recipe in _RATES else (
        "classic" if config.model.kind == ModelKind.CLASSIC else "fast")
    rate, shape, source = _RATES[key]
    scaled = _scaled(rate, shape, config.image_shape)
    members = config.model.members  # each trial trains them all, one after the other
    seconds = members * num_train * max(1, epochs) / scaled
    networks = f" x {members} networks (model.members)" if members > 1 else ""
    return seconds, (f"{num_train:,} train images x {max(1, epochs)} epoch(s) (the fewest the "
                     f"space holds){networks} at about {scaled:.0f} images/s (the rate of "
                     f"{source} on a 2-core CPU, scaled to {side})")


def check_budget(config: TrainerConfig, num_train: int, num_eval: int) -> str:
    """Refuses a tuning budget smaller than one trial's estimate (BadInput naming it and how
    it was worked out); returns the estimate's text, or "" when no budget is set.
    """
    budget = config.tuning.budget_minutes
    if not budget:
        return ""
    seconds, how = trial_estimate(config, num_train, num_eval)
    text = f"one trial takes at least about {seconds / 60:.1f} min: {how}"
    if seconds > budget * 60:
        raise BadInput(f"the tuning budget of {budget:g} min is too small for one trial: {text}; "
                       "raise ", Setting("trainer.tuning.budget_minutes"), " or leave it out "
                       "and set ", Setting("trainer.tuning.trials"))
    return text


def check_enabled(config: TrainerConfig) -> None:
    """Refuses a Tuner run whose config turns tuning off: on Kubeflow whether the Tuner exists
    is decided when the pipeline is compiled, while the trainer-config it reads is a run-time
    parameter; with trials and budget 0 the search would run BUDGET_ONLY_TRIALS unbounded.
    """
    if not config.tuning.enabled:
        raise BadInput("the pipeline was compiled with a Tuner (tuning on), but the run-time "
                       "training config turns tuning off (trials and budget 0): set ",
                       Setting("trainer.tuning.trials"), " or ",
                       Setting("trainer.tuning.budget_minutes"), " in the run-time "
                       "trainer-config, or compile the pipeline with tuning off")


@dataclasses.dataclass(frozen=True)
class TrialInputs:
    """What a trial trains on, as file patterns: for a trial in another process."""

    transform_graph: str
    train_files: tuple[str, ...]
    eval_files: tuple[str, ...]


def trial_trainer(config: TrainerConfig, inputs: TrialInputs, data_accessor
                  ) -> Callable[[TrainerConfig], dict]:
    """A trial's training in this process: its config -> the training record (train, eval).

    Scratch recipes decode the examples on the first trial and share them with the next ones;
    the transfer recipe extracts features in each trial (the fine-tuned depth decides where).
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer import data
    from trainer.config import Distribution

    tf_transform_output = tft.TFTransformOutput(inputs.transform_graph)
    train_files, eval_files = list(inputs.train_files), list(inputs.eval_files)
    if config.model.kind == ModelKind.TRANSFER:
        from trainer.transfer import train_transfer

        def transfer_trial(trial: TrainerConfig) -> dict:
            return train_transfer(trial, train_files, eval_files, data_accessor,
                                  tf_transform_output)[1]

        return transfer_trial
    from trainer.train import train

    # Trials run in this process: MultiWorkerMirroredStrategy is the Trainer's alone.
    strategy = (tf.distribute.get_strategy()
                if config.runtime.distribution == Distribution.MULTI_WORKER else None)
    decoded: list[data.TrainingInputs] = []

    def scratch_trial(trial: TrainerConfig) -> dict:
        if not decoded:
            # Trials are scored on eval, so they never train on it (data.refit is the final
            # model's, after the choice).
            decoded.append(data.training_inputs(train_files, eval_files, data_accessor,
                                                tf_transform_output,
                                                config.override({"data.refit": False})))
        return train(trial, decoded[0], strategy=strategy)[1]

    return scratch_trial


def usable_cpus() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup's cpu.max quota
    (a container's CPU limit), where there is one.
    """
    import math
    import os
    from pathlib import Path

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


class TrialProcesses:
    """The trial processes running now, to end them when the search stops early."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._running: set = set()
        self.stopping = False

    def started(self, process) -> None:
        with self._lock:
            self._running.add(process)
            stop = self.stopping
        if stop:
            process.terminate()

    def ended(self, process) -> None:
        with self._lock:
            self._running.discard(process)

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            running = list(self._running)
        for process in running:
            if process.poll() is None:
                log.info("[tuner] ending trial process %d: the search stopped", process.pid)
                process.terminate()


def process_trainer(inputs: TrialInputs, threads: int, cache_budget: str | None = None,
                    processes: TrialProcesses | None = None
                    ) -> Callable[[TrainerConfig], dict]:
    """A trial's training in a fresh process (trainer/tuning_worker.py) using `threads`
    threads and `cache_budget` (its share), for trials that run side by side; the same record
    keys the Tuner reads. `processes` keeps each process while it runs.
    """
    import json
    import tempfile

    from trainer.launch import run_worker

    def trial(config: TrainerConfig) -> dict:
        if cache_budget is not None:
            config = config.override({"data.cache_budget": cache_budget})
        if processes is not None and processes.stopping:
            raise RuntimeError("the search stopped")
        # A local folder: the processes share this machine, and the Tuner's working dir may be
        # a gs:// path on Kubeflow, where tempfile cannot make one.
        with tempfile.TemporaryDirectory(prefix="trial-") as folder:
            run_worker(["--config", json.dumps(config.to_dict()),
                        "--transform-graph", inputs.transform_graph,
                        "--train-files", *inputs.train_files,
                        "--eval-files", *inputs.eval_files,
                        "--threads", str(threads), "--result", folder],
                       module=WORKER_MODULE, what="tuning trial process",
                       **({"on_start": processes.started, "on_end": processes.ended}
                          if processes is not None else {}))
            result = TrialResult.read(folder)
        if result is None:
            raise RuntimeError(f"the tuning trial process wrote no {TrialResult.__name__}")
        return {"final_eval_accuracy": result.eval_accuracy, "epochs_run": result.epochs_run}

    return trial


def tuner_fn(fn_args):
    """TFX's Tuner entry point: the RecipeTuner over the examples the Trainer will read."""
    import tensorflow_transform as tft
    from tfx.components.tuner.component import TunerFnResult

    from trainer import data

    config = TrainerConfig.from_dict(fn_args.custom_config)
    check_enabled(config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    num_train = data.count_records(fn_args.train_files, fn_args.data_accessor,
                                   tf_transform_output)
    num_eval = data.count_records(fn_args.eval_files, fn_args.data_accessor, tf_transform_output)
    estimate = check_budget(config, num_train, num_eval)
    inputs = TrialInputs(fn_args.transform_graph_path, tuple(fn_args.train_files),
                         tuple(fn_args.eval_files))
    log.info("[tuner] %s search, %s, on %d train / %d eval images: %s", config.tuning.algorithm,
             f"at most {config.tuning.trials} trial(s)" if config.tuning.trials else
             "trials until the budget", num_train, num_eval,
             "; ".join(d.text() for d in searched(config)))
    tuner = make_tuner(config, trial_trainer(config, inputs, fn_args.data_accessor),
                       fn_args.working_dir, estimate)
    tuner.trial_inputs = inputs
    return TunerFnResult(tuner=tuner, fit_kwargs={"verbose": 0})


def settings_text(settings: Mapping[str, Any]) -> str:
    """Settings as `path=value`, floats to 4 significant digits (the record keeps them whole)."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in settings.items())


def trials_text(record: TuningRecord) -> list[str]:
    """One line per trial, best marked: for logs and the summary."""
    lines = []
    for t in record.trials:
        settings = settings_text(t.settings)
        accuracy = "failed" if t.eval_accuracy is None else f"{t.eval_accuracy:.4f}"
        mark = " (best)" if t.trial == record.best_trial else ""
        lines.append(f"trial {t.trial}: {settings}: eval accuracy {accuracy}, "
                     f"{t.seconds:.0f}s{mark}")
    return lines


"""The one type that says "the user's input is wrong": the CLI exits 2 for it and 1 otherwise.

A plain ValueError may come from a bug in our code or deep inside TensorFlow; reporting it as
the user's mistake would send them looking for a fault in their data that is not there. So a
check that rejects what the user or their data gave raises BadInput (or a subclass), and only
that reaches the console as "bad input". It lives in `schema/`, the lowest package, so every
package can raise it without importing upwards.

Errors carry the fact, not the flag: the same check runs under the CLI, where a setting is a
flag, and on Kubeflow, where it is a run-time parameter or fixed when the pipeline was
compiled. So a message names a setting that would change the outcome as a `Setting` part, by
its neutral name, and each front end says it its own way: `str(error)` (what Kubeflow's logs
show) with `neutral_name`, the CLI with its flags (`cli/main.py` `explain`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

# The compiled Kubeflow pipeline's run-time parameters (pipeline/factory.py creates them).
DATA_ROOT_PARAMETER = "data-root"
TRAINER_CONFIG_PARAMETER = "trainer-config"
PUSH_DESTINATION_PARAMETER = "push-destination"
# Data roots of spans only: which span (0: the newest) and how many spans the Trainer fits.
SPAN_PARAMETER = "span"
SPAN_WINDOW_PARAMETER = "span-window"
# With a BulkInferrer stage: the folder of unlabelled images it scores.
INFER_DATA_PARAMETER = "infer-data"
# PipelineConfig fields that are one of them; every TrainerConfig field is in trainer-config.
RUNTIME_PARAMETERS = {
    "data_root": DATA_ROOT_PARAMETER,
    "serving_dir": PUSH_DESTINATION_PARAMETER,
    "model_name": PUSH_DESTINATION_PARAMETER,
    "target_span": SPAN_PARAMETER,
    "span_window": SPAN_WINDOW_PARAMETER,
    "infer_data": INFER_DATA_PARAMETER,
}
# The prefix of a TrainerConfig field's neutral name (PipelineConfig.trainer), and the other
# parts of PipelineConfig whose fields are named with theirs.
TRAINER = "trainer"
PIPELINE_SCOPES = ("", "thresholds")


@dataclasses.dataclass(frozen=True)
class Setting:
    """A setting whose change would change the outcome, as a message names it.

    `name` is neutral, never a flag: a PipelineConfig field, by its path from PipelineConfig
    (`accept_new_classes`, `thresholds.min_accuracy`, a TrainerConfig field under `trainer.`:
    `trainer.cache_budget`), or an option of another entry point under its name
    (`ingest.skip_bad`, `predict.timeout`). `value`: the value the advice gives it, if any.
    """

    name: str
    value: str | None = None

    @property
    def field(self) -> str:
        """The last part of the name: the field or option itself."""
        return self.name.rpartition(".")[2]

    @property
    def scope(self) -> str:
        """What the name starts with: `trainer`, `ingest`, ..., or "" for PipelineConfig."""
        return self.name.partition(".")[0] if "." in self.name else ""


def neutral_name(setting: Setting, first: bool = True) -> str:
    """A setting as any runner's user can act on it: its name, and (where a message names it
    `first`) for a pipeline setting what it is on Kubeflow: a run-time parameter, a field of
    trainer-config, or fixed at compile time.
    """
    value = f"={setting.value}" if setting.value is not None else ""
    if setting.scope == TRAINER:
        path = setting.name.partition(".")[2]
        where = (f" (on Kubeflow: {path} in the JSON of the {TRAINER_CONFIG_PARAMETER} run-time "
                 "parameter)")
        return f"the training setting {path}{value}" + (where if first else "")
    if setting.scope not in PIPELINE_SCOPES:
        return f"the {setting.scope} option {setting.field}{value}"
    parameter = RUNTIME_PARAMETERS.get(setting.name)
    where = (f" (on Kubeflow: the {parameter} run-time parameter)" if parameter is not None
             else " (on Kubeflow: fixed when the pipeline is compiled, compile-kfp)")
    return f"the setting {setting.name}{value}" + (where if first else "")


def neutral_namer() -> Callable[[Setting], str]:
    """neutral_name for one message: what a setting is on Kubeflow is said once."""
    said: set[str] = set()

    def name(setting: Setting) -> str:
        first = setting.name not in said
        said.add(setting.name)
        return neutral_name(setting, first)

    return name


Part = str | Setting


class Explained(Exception):
    """An error whose message may name settings: `parts` keeps them, `str()` names them
    neutrally, and `render` lets a front end name them its own way.
    """

    def __init__(self, *parts: Part) -> None:
        self.parts: tuple[Part, ...] = parts
        # args: the neutral text, so ValueError/RuntimeError behave as with a plain message.
        super().__init__(self.render(neutral_namer()))

    @property
    def settings(self) -> tuple[Setting, ...]:
        """The settings that would change the outcome, in the order the message names them."""
        return tuple(p for p in self.parts if isinstance(p, Setting))

    def render(self, name: Callable[[Setting], str]) -> str:
        return "".join(name(p) if isinstance(p, Setting) else p for p in self.parts)


class BadInput(Explained, ValueError):
    """The user's arguments, files or data are wrong; the message says what and how to fix it.

    A ValueError subclass so callers and tests that catch ValueError keep working.
    """


class MissingInput(BadInput, FileNotFoundError):
    """A file or folder the user named (or a command needs from an earlier one) is not there.

    Also a FileNotFoundError, for callers that catch that.
    """

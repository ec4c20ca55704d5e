"""NewModel: a model directory with no served version yet, as the Evaluator records it.

Kept apart from serving/model_dir.py (which loads TFX's fileio), where `new_model` finds one,
so that importing the run report's types (report/records.py) loads no TFX: `runs` and
`lineage` start without it. Reading an EvaluationRecord (in model_dir.py) still loads TFX.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from schema.errors import Setting, neutral_name


@dataclasses.dataclass(frozen=True)
class NewModel:
    """A model directory with no served version yet: a run into it has no baseline to compare
    with (the Evaluator's) and no class map to check the data against (the DataGate's).

    The model name defaults to the data folder's name, so new data in a new folder (pets-v2/
    after pets/) starts a new model unless --model-name names the old one: `same_classes` lists
    the models beside it whose newest served version has these class names, in this order.
    """

    name: str
    path: str
    serving_dir: str
    num_classes: int
    same_classes: tuple[str, ...] = ()

    def lines(self, name: Callable[[Setting], str] = neutral_name) -> list[str]:
        """What a run into a new model should know; `name` says the model name setting."""
        found = [f"new model `{self.name}`: {self.path} holds no version yet, so there is no "
                 "baseline and no class-map check"]
        if len(self.same_classes) == 1:
            (other,) = self.same_classes
            found.append(f"`{other}` in {self.serving_dir} has the same {self.num_classes} "
                         f"classes: pass {name(Setting('model_name', other))} to make this run "
                         "a new version of it")
        elif self.same_classes:
            names = ", ".join(f"`{n}`" for n in self.same_classes)
            found.append(f"{names} in {self.serving_dir} have the same {self.num_classes} "
                         f"classes: pass {name(Setting('model_name'))} with one of them to make "
                         "this run a new version of it")
        return found

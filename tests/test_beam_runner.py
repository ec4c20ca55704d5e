"""The Beam runner of local runs and Kubeflow pods: Beam's FnApiRunner, never Prism (which
DirectRunner fetches from GitHub at run time first). `run --beam direct-multi`, the same runner
with worker processes, runs in tests/test_beam_multi.py.
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability import prism_runner

from pipeline.config import DIRECT_MULTI_BEAM_ARGS, LOCAL_BEAM_ARGS, RUNNER_ARG

DIRECT_RUNNER_ARGS = ("--runner=DirectRunner", *LOCAL_BEAM_ARGS[1:])


@pytest.mark.parametrize(("args", "tries_prism"), [(LOCAL_BEAM_ARGS, False),
                                                    (DIRECT_RUNNER_ARGS, True)])
def test_the_local_runner_computes_without_trying_prism(args, tries_prism, monkeypatch,
                                                        tmp_path: Path) -> None:
    """DirectRunner (the second case, what local runs named before) tries Prism first, and
    falls back to the FnApiRunner when Prism fails, as it does offline.
    """
    tried = []

    def offline_prism(self, *args, **kwargs):
        tried.append(True)
        raise RuntimeError("Unable to fetch remote prism binary")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", offline_prism)
    with beam.Pipeline(argv=list(args)) as pipeline:
        _ = (pipeline | beam.Create(range(5)) | beam.Map(lambda x: x * x)
             | beam.CombineGlobally(sum) | beam.io.WriteToText(str(tmp_path / "total")))
    (written,) = tmp_path.glob("total*")
    assert written.read_text().split() == ["30"]
    assert bool(tried) == tries_prism
    assert RUNNER_ARG in DIRECT_MULTI_BEAM_ARGS  # the Kubeflow pods' default too

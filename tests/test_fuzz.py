"""A fixed-seed sample of benchmarks/fuzz.py's cases: damaged stills, videos, stream bytes and live sources each end
in an output or in one error line, with no traceback, hang, half-written file or output longer than its input."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz  # a benchmark script, found through its folder

SAMPLE = fuzz.cases(500, seed=1)[::25]  # 20 of the benchmark's 500: every kind, runner and mutation


def test_sample_covers_every_kind_runner_and_mutation():
    assert {c.kind for c in SAMPLE} == set(fuzz.KINDS) and {c.mutation for c in SAMPLE} == set(fuzz.MUTATIONS)
    assert {c.runner for c in SAMPLE} == {"convert", "url", "live"}


def test_damaged_inputs_end_in_an_output_or_one_line():
    outcomes = fuzz.run_all(SAMPLE, jobs=2, timeout=300, say=lambda line: None)
    bad = [f"case {o.case}: {o.verdict}" for o in outcomes if o.verdict != "ok"]
    assert not bad, "\n".join(bad)
    assert {o.rc for o in outcomes} == {0, 2}  # both endings were met: the sample damages and spares


def test_a_mutation_damages_its_input():
    import random

    data = bytes(range(256)) * 64
    for mutation in fuzz.MUTATIONS:
        got = fuzz.mutate(data, mutation, random.Random(7))
        assert got != data and len(got) <= len(data), mutation

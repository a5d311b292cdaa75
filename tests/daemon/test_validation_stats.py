"""Base-vs-checkpoint statistics (daemon/stats.py and GET .../validation/compare) against independent computations.

The p-value is checked against scipy's exact binomial test and against a binomial tail summed here from the
pmf's recurrence; the bootstrap interval against numpy's own resampling and, for a tiny set, the exact bootstrap
distribution found by enumerating every resample.
"""

from __future__ import annotations

import itertools
import json
import random
from fractions import Fraction

import numpy as np
import pytest

from daemon import api, stats
from daemon.client import ApiRequestError
from tests.daemon.test_endpoints import raw
from tests.support.daemon_proc import DaemonProcess
from tests.tui import recorded
from tests.tui.conftest import shared_recorded_daemon  # noqa: F401 - a fixture (see recorded_store_daemon)


def binomial_two_sided(wins: int, losses: int) -> float:
    """Independent exact sign test: the Binomial(m, 1/2) pmf by its recurrence, both tails summed."""
    m = wins + losses
    if m == 0:
        return 1.0
    pmf = [Fraction(1, 2 ** m)]
    for i in range(m):
        pmf.append(pmf[-1] * (m - i) / (i + 1))
    observed = pmf[wins]
    return float(min(Fraction(1), sum(p for p in pmf if p <= observed)))


def numpy_bootstrap(diffs: list[float], resamples: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    d = np.asarray(diffs)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def recorded_rewards(n: int, seed: int) -> tuple[dict[int, float], dict[int, float]]:
    """Paired rewards with partial credit, wins, losses and ties (the shape validation rows have)."""
    rng = random.Random(seed)
    base, tuned = {}, {}
    for i in range(n):
        b = rng.choice([0.0, 0.0, 0.25, 0.5, 1.0])
        base[i] = b
        tuned[i] = b if rng.random() < 0.3 else min(1.0, max(0.0, b + rng.choice([-0.5, -0.25, 0.25, 0.5, 0.75])))
    return base, tuned


@pytest.mark.parametrize(("wins", "losses"), [(0, 0), (1, 0), (5, 5), (9, 1), (89, 11), (3, 17), (200, 150)])
def test_sign_test_matches_an_independent_binomial_tail(wins: int, losses: int) -> None:
    assert stats.sign_test_p(wins, losses) == pytest.approx(binomial_two_sided(wins, losses), rel=1e-12)


@pytest.mark.parametrize(("wins", "losses"), [(1, 0), (5, 5), (9, 1), (89, 11), (3, 17), (40, 60)])
def test_sign_test_matches_scipy(wins: int, losses: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue
    assert stats.sign_test_p(wins, losses) == pytest.approx(expected, rel=1e-9)


def test_paired_comparison_counts_and_means_on_recorded_rows() -> None:
    base, tuned = recorded_rewards(100, seed=11)
    c = stats.compare_paired(base, tuned)
    diffs = [tuned[i] - base[i] for i in range(100)]
    assert c.n == 100
    assert c.base_mean == pytest.approx(sum(base.values()) / 100)
    assert c.mean == pytest.approx(sum(tuned.values()) / 100)
    assert c.mean_diff == pytest.approx(sum(diffs) / 100)
    assert (c.wins, c.losses, c.ties) == (sum(d > 0 for d in diffs), sum(d < 0 for d in diffs),
                                          sum(d == 0 for d in diffs))
    assert c.wins and c.losses and c.ties
    assert c.p_value == pytest.approx(binomial_two_sided(c.wins, c.losses))
    lo, hi = numpy_bootstrap(diffs, 200_000, seed=3)
    assert c.ci95 is not None
    assert c.ci95[0] == pytest.approx(lo, abs=0.01) and c.ci95[1] == pytest.approx(hi, abs=0.01)
    assert c.mean_diff is not None and c.ci95[0] < c.mean_diff < c.ci95[1]


def test_bootstrap_matches_the_exact_bootstrap_distribution_of_a_tiny_set() -> None:
    """Every one of the 6**6 equally likely resamples of 6 rows, enumerated: the exact percentile interval."""
    diffs = [0.5, -0.25, 0.0, 1.0, 0.25, 0.75]
    n = len(diffs)
    exact = sorted(sum(diffs[i] for i in idx) / n for idx in itertools.product(range(n), repeat=n))
    lo, hi = stats.percentile(exact, 0.025), stats.percentile(exact, 0.975)
    ours = stats.bootstrap_ci95(diffs, resamples=100_000, seed=5)
    assert ours[0] == pytest.approx(lo, abs=0.03) and ours[1] == pytest.approx(hi, abs=0.03)


def test_bootstrap_is_seeded() -> None:
    """Same rows, same seed: the same interval; another seed draws other resamples (continuous rewards)."""
    rng = random.Random(4)
    base = {i: rng.random() for i in range(40)}
    tuned = {i: rng.random() for i in range(40)}
    assert stats.compare_paired(base, tuned) == stats.compare_paired(base, tuned)
    assert stats.compare_paired(base, tuned, seed=1).ci95 != stats.compare_paired(base, tuned, seed=2).ci95


def test_only_rows_in_both_steps_are_paired() -> None:
    c = stats.compare_paired({0: 0.0, 1: 1.0, 2: 0.5}, {1: 1.0, 2: 1.0, 3: 0.0})
    assert (c.n, c.wins, c.losses, c.ties) == (2, 1, 0, 1)
    empty = stats.compare_paired({0: 1.0}, {1: 1.0})
    assert empty.n == 0 and empty.ci95 is None and empty.p_value is None


def test_headline_reads_like_the_issue() -> None:
    s = api.PairedStats(n=100, base_mean=0.4, mean=0.655, mean_diff=0.255, ci95=(0.21, 0.30), wins=89, losses=11,
                        ties=0, p_value=1e-17)
    assert s.headline() == "+0.255 [0.21, 0.30]  p<0.001  89↑ 11↓"
    assert api.format_p_value(0.0321) == "p=0.032" and api.format_p_value(1.0) == "p=1"
    assert api.PairedStats(n=0).headline() == "no rows in both steps"


# ------------------------------------------------------------------------------------------- through the daemon


@pytest.fixture
def recorded_store_daemon(request: pytest.FixtureRequest) -> DaemonProcess:
    """The TUI's recorded store (jobs with base and later validation, sub-rewards exact/close), a real daemon on it:
    one for the module (these tests only read it)."""
    return request.getfixturevalue("shared_recorded_daemon")


def test_compare_endpoint_matches_an_independent_computation_on_stored_rows(recorded_store_daemon) -> None:
    with recorded_store_daemon.client() as c:
        steps = c.validation(recorded.SUCCEEDED).steps
        assert steps[0] == 0 and len(steps) > 1
        got = c.validation_compare(recorded.SUCCEEDED)
        assert (got.base_step, got.step, got.resamples, got.seed) == (0, steps[-1], 2000, 0)
        base = {r.row_index: r for r in c.validation(recorded.SUCCEEDED, step=0).data}
        last = {r.row_index: r for r in c.validation(recorded.SUCCEEDED, step=steps[-1]).data}
        diffs = [last[i].reward - base[i].reward for i in sorted(base)]
        assert got.n == len(diffs) == 12
        assert got.base_mean == pytest.approx(sum(r.reward for r in base.values()) / 12)
        assert got.mean_diff == pytest.approx(sum(diffs) / 12)
        wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
        assert (got.wins, got.losses, got.ties) == (wins, losses, 12 - wins - losses)
        assert got.p_value == pytest.approx(binomial_two_sided(wins, losses))
        lo, hi = numpy_bootstrap(diffs, 200_000, seed=1)
        assert got.ci95 is not None
        assert got.ci95[0] == pytest.approx(lo, abs=1 / 12) and got.ci95[1] == pytest.approx(hi, abs=1 / 12)
        assert set(got.per_grader) == {"exact", "close"}
        exact_diffs = [last[i].sub_rewards["exact"] - base[i].sub_rewards["exact"] for i in sorted(base)]
        ex = got.per_grader["exact"]
        assert ex.mean_diff == pytest.approx(sum(exact_diffs) / 12)
        assert ex.base_mean == pytest.approx(sum(r.sub_rewards["exact"] for r in base.values()) / 12)
        assert (ex.wins, ex.losses) == (sum(d > 0 for d in exact_diffs), sum(d < 0 for d in exact_diffs))
        # the same answer every time (seeded), and a step against itself: all ties, p = 1
        assert c.validation_compare(recorded.SUCCEEDED) == got
        same = c.validation_compare(recorded.SUCCEEDED, step=0)
        assert (same.mean_diff, same.ties, same.p_value, same.ci95) == (0.0, 12, 1.0, (0.0, 0.0))


BAD_COMPARES: list[tuple[dict[str, int | str], int, str]] = [
    ({"step": 7}, 404, "step"), ({"base_step": 3}, 404, "base_step"), ({"rescoring": "nope"}, 404, "rescoring"),
    ({"step": -1}, 400, "step"), ({"resamples": 10}, 400, "resamples"), ({"base_step": "x"}, 400, "base_step"),
    ({"rescoring": "../x"}, 400, "rescoring"),
]


def test_compare_refuses_bad_steps_and_parameters(recorded_store_daemon) -> None:
    with raw(recorded_store_daemon) as h:
        for params, status, param in BAD_COMPARES:
            resp = h.get(f"/v1/fine_tuning/jobs/{recorded.SUCCEEDED}/validation/compare", params=params)
            assert resp.status_code == status, (params, resp.text)
            assert resp.json()["error"]["param"] == param, params
    with recorded_store_daemon.client() as c:
        with pytest.raises(ApiRequestError) as e:
            c.validation_compare("ftjob-nope")
        assert e.value.status_code == 404
        with pytest.raises(ApiRequestError) as e:
            c.validation_compare(recorded.QUEUED)  # no validation yet
        assert e.value.status_code == 404 and e.value.param == "step"


def test_cli_validation_compare_prints_the_change_with_its_interval(recorded_store_daemon) -> None:
    from tests.daemon.test_cli import cli

    rft_home = recorded_store_daemon.paths.home
    with recorded_store_daemon.client() as c:
        got = c.validation_compare(recorded.SUCCEEDED)
    out = cli(rft_home, "jobs", "validation", recorded.SUCCEEDED, "--compare").stdout
    assert f"step {got.step} vs step 0 over 12 rows: {got.headline()}" in out
    assert "exact" in out and "close" in out and "95% CI" in out  # the per-grader table
    plain = cli(rft_home, "jobs", "validation", recorded.SUCCEEDED, "--no-compare").stdout
    assert got.headline() not in plain


@pytest.mark.slow
def test_cli_validation_json_carries_the_compare_the_text_shows(recorded_store_daemon) -> None:
    """`jobs validation --json` is the page plus `compare` (the statistics the text ends with), for any base step."""
    from tests.daemon.test_cli import cli

    rft_home = recorded_store_daemon.paths.home
    job = recorded.SUCCEEDED
    with recorded_store_daemon.client() as c:
        latest = c.validation_compare(job)
        from_10 = c.validation_compare(job, step=30, base_step=10)
    shown = json.loads(cli(rft_home, "jobs", "validation", job, "--json").stdout)
    assert shown["step"] == latest.step and len(shown["data"]) == 12  # the page, as before
    assert api.ValidationCompare.model_validate(shown["compare"]) == latest
    assert "compare" not in json.loads(cli(rft_home, "jobs", "validation", job, "--json", "--no-compare").stdout)
    assert json.loads(cli(rft_home, "jobs", "validation", job, "--json", "--step", "0").stdout)["compare"] is None
    picked = json.loads(cli(rft_home, "jobs", "validation", job, "--json", "--step", "30", "--base-step", "10").stdout)
    assert picked["step"] == 30 and api.ValidationCompare.model_validate(picked["compare"]) == from_10
    text = cli(rft_home, "jobs", "validation", job, "--step", "30", "--base-step", "10").stdout
    assert f"step 30 vs step 10 over 12 rows: {from_10.headline()}" in text and "step 10 reward" in text
    bad = cli(rft_home, "jobs", "validation", job, "--json", "--base-step", "3", check=False)
    assert bad.returncode != 0 and "Error [--base-step]: No validation at step 3" in bad.stderr

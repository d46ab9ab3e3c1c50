"""The issue "Performance"'s goals as ``aion bench`` reports them (pure logic on a result)."""

from __future__ import annotations

from aion.bench._runner import goals, render_goals


def _result() -> dict:  # type: ignore[type-arg]
    return {
        "options": {"floor_kind": "txn", "timer_count": 10_000, "duration": 10.0, "timer_load_rate": 100.0},
        "scenarios": {
            "throughput": {"workflows_per_s": 600, "ratio_to_floor": {"workflows_per_s": 0.49}},
            "latency": {
                "rates": {"50/s": {"p50_ms": 26.9}, "200/s": {"p50_ms": 141}},
                "spread": {"rates": {"50/s": {"p50_ms": [26.1, 27.0]}}},
                "ratio_to_floor": {"200/s": {"p50_ms": 3.6, "p99_ms": 2.1}},
            },
            "timers": {"fire_lag_p99_ms": 71, "spread": {"fire_lag_p99_ms": [70, 75]}},
        },
    }


def test_each_goal_measured_is_judged_against_its_bound() -> None:
    got = {g["goal"]: g for g in goals(_result())}
    assert {k: v["met"] for k, v in got.items()} == {
        "throughput, share of the floor's": True,  # 0.49 >= 0.33
        "200/s start→result p50, × the floor's": False,  # 3.6 > 2
        "200/s start→result p99, × the floor's": True,  # 2.1 <= 3
        "50/s start→result p50, ms": False,  # 26.9 > 10
        "timer lag p99 from the log, ms": False,  # 71 > 50
    }
    assert got["throughput, share of the floor's"]["floor"] == "txn"
    assert got["50/s start→result p50, ms"]["spread"] == [26.1, 27.0]
    assert got["timer lag p99 from the log, ms"]["conditions"] == "10,000 timers over 10 s, 100 starts/s"


def test_a_goal_the_run_did_not_measure_is_left_out() -> None:
    r = _result()
    del r["scenarios"]["timers"], r["scenarios"]["latency"]
    assert [g["goal"] for g in goals(r)] == ["throughput, share of the floor's"]
    assert goals({"scenarios": {}}) == [] and render_goals({"scenarios": {}}) == ""


def test_the_lines_say_bound_value_spread_and_verdict() -> None:
    lines = render_goals(_result()).splitlines()
    assert lines[0] == "goal: throughput, share of the floor's ≥ 0.33: 0.49, against the txn floor — met"
    assert lines[1] == "goal: 200/s start→result p50, × the floor's ≤ 2: 3.6, against the txn floor — not met"
    assert lines[3] == "goal: 50/s start→result p50, ms ≤ 10: 26.9 (26.1–27) — not met"
    assert lines[4] == ("goal: timer lag p99 from the log, ms ≤ 50: 71 (70–75), as run: 10,000 timers over 10 s, "
                        "100 starts/s — not met")

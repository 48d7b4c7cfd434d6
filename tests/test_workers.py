import time

from lakehouse.media.workers import request_time_limit, run_supervised


def _by_key(outcomes):
    return {o.key: o for o in outcomes}


def test_results_errors_and_crashes_are_reported_per_task():
    tasks = [("a", "hello"), ("b", "boom"), ("c", None), ("d", [1, 2])]
    funcs = {"a": "echo", "b": "fail", "c": "crash", "d": "echo"}
    outcomes = {}
    for key, payload in tasks:
        outcomes.update(
            _by_key(run_supervised(f"worker_tasks:{funcs[key]}", [(key, payload)], workers=1))
        )
    assert outcomes["a"].ok and outcomes["a"].value == "hello"
    assert not outcomes["b"].ok and outcomes["b"].error_code == "exception"
    assert "boom" in outcomes["b"].message
    assert not outcomes["c"].ok and outcomes["c"].error_code == "worker_crashed"
    assert "code 7" in outcomes["c"].message
    assert outcomes["d"].value == [1, 2]


def test_a_task_past_its_time_limit_is_killed_and_the_batch_continues():
    tasks = [("slow", 30), ("fast1", 0), ("fast2", 0), ("fast3", 0)]
    start = time.monotonic()
    outcomes = _by_key(run_supervised("worker_tasks:sleep", tasks, workers=2, timeout_s=2))
    elapsed = time.monotonic() - start
    assert outcomes["slow"].error_code == "timeout"
    assert all(outcomes[k].ok for k in ("fast1", "fast2", "fast3"))
    assert elapsed < 20  # the 30 s task did not run to completion


def sleep_after_asking(payload):
    """A task (run by name in a worker) that asks for a time limit, then sleeps."""
    request_time_limit(payload["ask"])
    time.sleep(payload["sleep"])
    return payload["sleep"]


def test_a_task_may_ask_for_more_time_up_to_the_ceiling():
    tasks = [
        ("granted", {"ask": 100, "sleep": 4}),  # past the 3 s base, within the 8 s ceiling
        ("capped", {"ask": 1e9, "sleep": 60}),  # a huge request gets the ceiling
        ("too little", {"ask": 0.1, "sleep": 60}),  # never less than the base
        ("not a number", {"ask": float("nan"), "sleep": 60}),
    ]
    start = time.monotonic()
    outcomes = _by_key(
        run_supervised(
            "test_workers:sleep_after_asking", tasks, workers=4, timeout_s=3, max_timeout_s=8
        )
    )
    assert time.monotonic() - start < 30
    assert outcomes["granted"].ok and outcomes["granted"].value == 4
    assert outcomes["capped"].error_code == "timeout"
    assert "8 s per-file time limit" in outcomes["capped"].message
    assert 8 <= outcomes["capped"].seconds < 20
    for key in ("too little", "not a number"):
        assert outcomes[key].error_code == "timeout"
        assert "3 s per-file time limit" in outcomes[key].message
        assert outcomes[key].seconds < 8


def test_asking_for_time_outside_a_worker_does_nothing():
    assert sleep_after_asking({"ask": 100, "sleep": 0}) == 0


def test_memory_limit_is_enforced_per_task():
    outcomes = _by_key(
        run_supervised(
            "worker_tasks:allocate", [("big", 2048), ("small", 1)], workers=1, memory_mb=1024
        )
    )
    assert outcomes["big"].error_code == "memory_limit"
    assert outcomes["small"].ok and outcomes["small"].value == 1024 * 1024

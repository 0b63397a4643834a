"""The step decorator of the XenAPI seed, the progress glue and rollback."""

import pytest

from virtdriver.common.progress import ProgressReporter, Rollback, make_step_decorator


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, context, instance, step, total_steps):
        self.calls.append((context, instance, step, total_steps))


def test_seed_example_two_steps_decorated_one_run_is_fifty_percent():
    update = Recorder()
    step = make_step_decorator("ctx", "inst", update)

    @step
    def step1():
        return "one"

    @step
    def step2():
        return "two"

    assert step1() == "one"
    assert update.calls == [("ctx", "inst", 1, 2)]
    assert round(update.calls[-1][2] / update.calls[-1][3] * 100) == 50


def test_total_offset_counts_steps_taken_elsewhere():
    update = Recorder()
    step = make_step_decorator(None, None, update, total_offset=1)
    steps = [step(lambda: None) for _ in range(4)]
    for run in steps:
        run()
    assert [call[2:] for call in update.calls] == [(1, 5), (2, 5), (3, 5), (4, 5)]


def test_a_failing_step_does_not_count():
    update = Recorder()
    step = make_step_decorator(None, None, update)

    @step
    def boom():
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError):
        boom()
    assert update.calls == []


def test_reporter_sets_instance_progress_and_calls_callback_with_step_name():
    heard = []

    class Inst:
        progress = 0
        saved = 0

        def save(self):
            self.saved += 1

    instance = Inst()
    step = make_step_decorator(None, instance, ProgressReporter(
        lambda inst, pct, name: heard.append((pct, name))))

    @step
    def _create_vm():
        pass

    @step
    def _power_on():
        pass

    @step
    def _third():
        pass

    _create_vm()
    _power_on()
    assert heard == [(33, "create_vm"), (67, "power_on")]
    assert instance.progress == 67 and instance.saved == 2


def test_reporter_tolerates_instances_without_progress_attribute():
    heard = []
    ProgressReporter(lambda *a: heard.append(a))(None, {"uuid": "x"}, 1, 1)
    assert heard == [({"uuid": "x"}, 100, "")]


def test_rollback_undoes_in_reverse_and_reraises():
    done = []
    with pytest.raises(ValueError, match="step 3"), Rollback("spawn") as undo:
        undo.push(done.append, "undo 1")
        undo.push(done.append, "undo 2")
        raise ValueError("step 3")
    assert done == ["undo 2", "undo 1"]


def test_rollback_keeps_going_when_an_undo_fails(caplog):
    done = []

    def broken():
        raise OSError("server gone")

    with pytest.raises(KeyError), Rollback("spawn") as undo:
        undo.push(done.append, "first")
        undo.push(broken)
        raise KeyError("original")
    assert done == ["first"]
    assert "rollback of spawn: broken failed" in caplog.text


def test_rollback_discards_on_success():
    done = []
    with Rollback() as undo:
        undo.push(done.append, "never")
    assert done == []

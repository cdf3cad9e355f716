"""`llm.continuous_rows.pull_rows` / `refusing`: how every continuous decoder fills its free slots."""

from whyrec.llm.continuous_rows import pull_rows, refusing


def queue(items):
    waiting = list(items)

    def pull(n: int) -> list:
        taken, waiting[:] = waiting[:n], waiting[n:]
        return taken
    return pull, waiting


def test_pulls_again_while_refused_requests_leave_slots_free():
    pull, waiting = queue([("a", 1), ("bad", -1), ("b", 2), ("c", 3), ("d", 4)])
    answered = {}

    def build(key, x):
        if x < 0:
            raise ValueError(f"{key} is not a row")
        return key, x * 10

    rows = pull_rows(pull, 3, refusing(build, answered.__setitem__))
    assert rows == [("a", 10), ("b", 20), ("c", 30)]  # 3 rows although the first pull gave only 2
    assert list(answered) == ["bad"] and isinstance(answered["bad"], ValueError)
    assert waiting == [("d", 4)]  # nothing pulled beyond the free slots


def test_stops_when_nothing_waits():
    pull, _ = queue([("a", 1)])
    assert pull_rows(pull, 4, lambda r: r) == [("a", 1)]
    assert pull_rows(pull, 4, lambda r: r) == []


def test_requests_served_otherwise_take_no_slot():
    pull, _ = queue([("u1", 0), ("u1", 1), ("u2", 2)])
    rows = pull_rows(pull, 2, lambda r: None if r[1] == 1 else r)  # the second request shares the first's row
    assert rows == [("u1", 0), ("u2", 2)]

"""OCT's tools, as OCT scripts import them: `from oct_turrets.tools import CustomTimer`."""
import time


class CustomTimer(object):
    """`with CustomTimer(transaction, 'name'):` records the block's duration in seconds as the
    custom timer `name` of this iteration."""

    def __init__(self, trans, name):
        self.trans = trans
        self.name = name
        self.start = None

    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, exc_type, exc_value, tb):
        self.trans.custom_timers[self.name] = time.time() - self.start
        return False


def _tally(trans):
    tally = getattr(trans, "_oct_tally", None)
    if tally is None:
        tally = trans._oct_tally = {"checks": {}, "counters": {}}
    return tally


def check(trans, value, checks):
    """k6's check() for OCT scripts: `check(self, response, {"status is 200": lambda r:
    r.status_code == 200})` runs each named predicate on `value` and counts it passed or failed
    in this iteration (a predicate that raises has failed). It never fails the transaction;
    returns whether all passed. Counts reach the report, summary.json and thresholds
    (`"checks > 99%"`)."""
    counts = _tally(trans)["checks"]
    ok_all = True
    for name, predicate in checks.items():
        try:
            ok = bool(predicate(value))
        except Exception:  # noqa: B902 - a predicate that raises is a failed check
            ok = False
        slot = counts.setdefault(str(name), {"passed": 0, "failed": 0})
        slot["passed" if ok else "failed"] += 1
        ok_all = ok_all and ok
    return ok_all


def counter(trans, name, n=1):
    """A custom counter (Loads' incr_counter): adds `n` to `name` in this iteration; the report
    and summary.json show its total and rate per interval."""
    counters = _tally(trans)["counters"]
    counters[str(name)] = counters.get(str(name), 0) + n

"""OCT's BaseTransaction, as OCT scripts import it: `from oct_turrets.base import BaseTransaction`."""
from oct_turrets import tools


class BaseTransaction(object):
    """Base of an OCT transaction: subclass it as `Transaction` and define run()."""

    def __init__(self, config=None, context=None):
        self.config = config if config is not None else {}
        self.context = context if context is not None else {}
        self.custom_timers = {}

    def setup(self):
        """Called before every run(); not timed."""

    def run(self):
        """One transaction; timed."""

    def tear_down(self):
        """Called after every run(); not timed."""

    def check(self, value, checks):
        """`self.check(r, {"status is 200": lambda r: r.status_code == 200})`: see tools.check."""
        return tools.check(self, value, checks)

    def counter(self, name, n=1):
        """`self.counter("bytes", len(body))`: see tools.counter."""
        tools.counter(self, name, n)

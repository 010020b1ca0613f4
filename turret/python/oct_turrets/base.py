"""OCT's BaseTransaction, as OCT scripts import it: `from oct_turrets.base import BaseTransaction`."""


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

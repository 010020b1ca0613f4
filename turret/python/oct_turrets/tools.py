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

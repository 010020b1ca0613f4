"""A virtual user for oct, written for OCT: runs unchanged under the real oct-turrets and under
oct's own turret.

Each canon creates one Transaction, then loops: setup(), run() (timed), tear_down(). An exception
raised in run() is recorded as the transaction's error; the canon goes on."""
import random
import time

from oct_turrets.base import BaseTransaction
from oct_turrets.tools import CustomTimer


class Transaction(BaseTransaction):
    def __init__(self, config, context=None):
        super(Transaction, self).__init__(config, context)
        # self.config is this turret's config; self.context what the HQ set for the test

    def setup(self):
        pass

    def run(self):
        # CustomTimer records how long the block took as a custom timer (seconds)
        with CustomTimer(self, 'example_timer'):
            time.sleep(random.uniform(0.01, 0.05))
        # or set one directly
        self.custom_timers['a timer'] = random.uniform(0.001, 0.01)

    def tear_down(self):
        pass


if __name__ == '__main__':
    trans = Transaction({})
    trans.run()
    print(trans.custom_timers)

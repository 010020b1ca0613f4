"""oct's test data for OCT-style scripts: the row each feeder (config.json `data`) gave this
iteration, as a dict of its CSV fields; None once a feeder with `on_exhausted: "stop"` has run
out (the canon then stops after this iteration).

    from oct_turrets.data import row

    class Transaction(BaseTransaction):
        def run(self):
            user = row("users")
            if user is None:
                return
            login(user["login"], user["password"])
"""

_rows = {}


def _set(rows):
    global _rows
    _rows = rows


def row(name):
    """This iteration's row of feeder `name` (a dict), or None."""
    if name not in _rows:
        raise KeyError("no feeder %r (config.json `data` has %s)" % (name, sorted(_rows) or "none"))
    return _rows[name]

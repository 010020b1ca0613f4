"""oct's Python worker: runs one canon of an OCT-style script, driven over stdin/stdout with JSON
lines (docs/process-protocol.md). One worker process per canon, so canons run in parallel."""
import importlib.util
import json
import os
import sys
import time
import traceback

from oct_turrets import data as oct_data

# The protocol owns the real stdout; a script's print() goes to stderr (the turret's log).
_proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
sys.stdout = sys.stderr


def reply(obj):
    _proto.write(json.dumps(obj) + "\n")
    _proto.flush()


def load(path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError("cannot load %s" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "Transaction"):
        raise ImportError("%s defines no Transaction class" % path)
    return module


def make(module, config, context):
    cls = module.Transaction
    for args in ((config, context), (config,), ()):
        try:
            return cls(*args)
        except TypeError:
            if args == ():
                raise
    raise TypeError("cannot create Transaction")


def message(exc):
    text = str(exc)
    return text if text else type(exc).__name__


def main():
    script = sys.argv[1]
    try:
        module = load(script)
    except BaseException as e:  # noqa: B902 - any import failure is the script's, reported
        reply({"ok": False, "error": "%s: %s" % (script, "".join(traceback.format_exception_only(type(e), e)).strip())})
        return 1
    trans = None
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.get("op")
        if op == "check":
            reply({"ok": True})
        elif op == "init":
            try:
                trans = make(module, cmd.get("config") or {}, cmd.get("context") or {})
                if not hasattr(trans, "custom_timers"):
                    trans.custom_timers = {}
                reply({"ok": True})
            except Exception as e:
                reply({"ok": False, "error": "Transaction(): %s" % message(e)})
        elif op == "iteration":
            oct_data._set(cmd.get("data") or {})
            trans.custom_timers = {}
            error, elapsed = "", 0.0
            try:
                if hasattr(trans, "setup"):
                    trans.setup()
            except Exception as e:
                error = "setup: %s" % message(e)
            if not error:
                start = time.time()
                try:
                    trans.run()
                except Exception as e:
                    error = message(e)
                elapsed = time.time() - start
            try:
                if hasattr(trans, "tear_down"):
                    trans.tear_down()
            except Exception as e:
                if not error:
                    error = "tear_down: %s" % message(e)
            timers = {}
            for k, v in (trans.custom_timers or {}).items():
                try:
                    timers[str(k)] = float(v)
                except (TypeError, ValueError):
                    pass
            out = {"scriptrun_time": elapsed, "error": error, "custom_timers": timers}
            # What check() and counter() tallied in this iteration, if anything.
            tally = getattr(trans, "_oct_tally", None)
            if tally is not None:
                if tally["checks"]:
                    out["checks"] = tally["checks"]
                if tally["counters"]:
                    out["counters"] = tally["counters"]
                trans._oct_tally = None
            reply(out)
        else:
            reply({"ok": False, "error": "unknown op %r" % op})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Teardown on every exit path.

Resources (mounts, loop devices, daemons) register an undo callback here as
soon as they exist. Callbacks run in reverse order of registration:
  * normally, from the owner's own try/finally via release();
  * on SIGINT/SIGTERM/SIGHUP, because the handler raises Interrupted in the
    main thread, which unwinds every try/finally;
  * as a last resort from atexit, for anything still registered.

While a resource is being created and handed to its owner (critical()),
the handler only notes the signal; Interrupted is raised when the outermost
critical section ends. So an interrupt never leaves a process or mount that
nobody knows about. (The signal mask is not used for this: children would
inherit a blocked SIGTERM.)
"""

import atexit
import contextlib
import itertools
import signal
import sys
import traceback

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """Raised in the main thread when the harness receives a signal.

    A BaseException so that test code catching Exception does not swallow it.
    """

    def __init__(self, signum):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


_counter = itertools.count()
_stack = {}  # token -> (description, callback), insertion ordered
_interrupted_by = None
_installed = False
_critical_depth = 0
_pending = None  # signal noted during a critical section


def register(description, callback):
    """Remember callback() as the undo action for a resource; returns a token."""
    token = next(_counter)
    _stack[token] = (description, callback)
    return token


def release(token):
    """Run and forget the undo action registered under token (if still there).

    The action runs to completion even if a signal arrives meanwhile; the
    Interrupted is raised afterwards.
    """
    entry = _stack.get(token)
    if entry is None:
        return
    description, callback = entry
    with critical():
        try:
            callback()
        finally:
            _stack.pop(token, None)


def forget(token):
    """Forget an undo action without running it (the resource is gone)."""
    _stack.pop(token, None)


def run_all():
    """Run every remaining undo action, newest first; never raises.

    A signal arriving meanwhile is only recorded (see interrupted_by()).
    """
    while _stack:
        token = next(reversed(_stack))
        description, _callback = _stack[token]
        try:
            release(token)
        except Interrupted:
            pass  # recorded in _interrupted_by; finish the teardown first
        except BaseException:  # keep going: the other resources matter too
            print(f"cleanup: {description} failed:", file=sys.stderr)
            traceback.print_exc()
        finally:
            _stack.pop(token, None)


def stop_raising():
    """From now on signals are only recorded (used once teardown is done)."""
    global _critical_depth
    _critical_depth += 1


def interrupted_by():
    """The signal number that interrupted the run, or None."""
    return _interrupted_by


def _handler(signum, _frame):
    global _interrupted_by, _pending
    if _interrupted_by is not None or _pending is not None:
        # Already unwinding: a second Ctrl-C must not abort the teardown.
        print(f"cleanup: {signal.Signals(signum).name} ignored, still cleaning up",
              file=sys.stderr)
        return
    if _critical_depth > 0:
        _pending = signum
        return
    _interrupted_by = signum
    raise Interrupted(signum)


def install():
    """Install the signal handlers and the atexit backstop (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, _handler)
    atexit.register(run_all)


@contextlib.contextmanager
def critical():
    """Defer Interrupted until the resource created inside is registered
    and its owner holds the token. Nestable."""
    global _critical_depth, _pending, _interrupted_by
    _critical_depth += 1
    try:
        yield
    finally:
        _critical_depth -= 1
        if _critical_depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            _interrupted_by = signum
            raise Interrupted(signum)

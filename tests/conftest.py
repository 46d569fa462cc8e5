"""Shared test configuration.

Tests run in pytest-trio's trio mode (see pyproject.toml): every ``async def``
test runs under Trio; take the ``autojump_clock`` fixture wherever time
passes, so grace periods of minutes cost no real time.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import logging
import os
import resource
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import pytest
import trio
import trustme
from hypothesis import Phase, settings

# tools/mutation.py runs the core's tests once per mutant: the same examples
# every time (a survivor must not depend on luck), no example database
# carried from one mutant to the next, no shrinking (a failure is all that
# counts, not its smallest example) and no deadline (a loaded machine must
# not kill a mutant).
settings.register_profile(
    "mutation",
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
)


# No test may hang: a bug that breaks a wait (a mutant, a regression) must
# fail the test that waits, or at worst end the run with a failure. Tests
# bound their own waits (trio.fail_after); this is the safety net behind
# them, for the waits a test cannot see (inside the library).
#
# A Trio test is cancelled once it has run for TRIO_TEST_LIMIT seconds of
# real time, whatever its clock: the autojump clock skips virtual time, so a
# bound on it would fire while a test waits for a thread or a real socket.
# The test then fails with where every task was still waiting. If even
# that cannot end it (a shielded wait for something that never comes), the
# process prints where each thread is and exits CANCEL_LIMIT seconds later:
# the run fails, it does not hang. A synchronous test gets HARD_LIMIT
# seconds, then the same exit. The slowest test takes a few seconds on an
# idle machine; the limits leave room for a loaded one (and for the
# benchmark's smoke run, which bounds its own subprocess at 300 s).
TRIO_TEST_LIMIT = 60.0
CANCEL_LIMIT = 30.0
HARD_LIMIT = 360.0

# A test that runs away allocating must fail with MemoryError, not take the
# machine's memory before the limits above end it: a decoder that loops for
# ever in one call, adding an item on every pass, grows by about 100 MB a
# second, and HARD_LIMIT would let it reach tens of gigabytes. So the
# address space of the test process (and of what it starts) is capped at
# MEMORY_LIMIT bytes: 8 GiB, far above what the suite needs (its largest
# process stays under 1 GiB) and below the memory of a small machine.
MEMORY_LIMIT = 8 << 30

T = TypeVar("T")
_TRIO_DIR = os.path.dirname(trio.__file__)


def _waiting_tasks() -> str:
    """Where each task of the current run is waiting, innermost last."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        frames = [
            f"{frame.f_code.co_filename}:{lineno} {frame.f_code.co_name}"
            for frame, lineno in task.iter_await_frames()
            if not frame.f_code.co_filename.startswith(_TRIO_DIR)
        ]
        if frames:
            lines.append(f"{'  ' * depth}{task.name}: {frames[-1]}")
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    root = trio.lowlevel.current_root_task()
    if root is not None:
        walk(root, 0)
    return "\n".join(lines)


async def _bounded(fn: Callable[[], Awaitable[T]]) -> T:
    token = trio.lowlevel.current_trio_token()
    stacks: list[str] = []
    with trio.CancelScope() as scope:

        def expire() -> None:
            stacks.append(_waiting_tasks())
            # Shown now: if the cancellation cannot end the test, the hard
            # limit ends the process and this is all there is to see.
            os.write(_real_stderr[0], (_hung_message(stacks) + "\n").encode())
            scope.cancel()

        def from_timer() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(expire)

        timer = threading.Timer(TRIO_TEST_LIMIT, from_timer)
        timer.daemon = True
        timer.start()
        try:
            return await fn()
        finally:
            timer.cancel()
    pytest.fail(_hung_message(stacks), pytrace=False)


def _hung_message(stacks: list[str]) -> str:
    return (
        f"the test was still running after {TRIO_TEST_LIMIT:g} s and was "
        "cancelled: a wait in it has no bound. Tasks still waiting:\n"
        + "\n".join(stacks)
    )


def _bounded_run(
    fn: Callable[[], Awaitable[T]],
    *,
    clock: trio.abc.Clock | None = None,
    instruments: Sequence[trio.abc.Instrument] = (),
) -> T:
    """``trio.run`` for pytest-trio, with the test under :data:`TRIO_TEST_LIMIT`."""
    return trio.run(
        functools.partial(_bounded, fn), clock=clock, instruments=instruments
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # After pytest-trio marked the async tests: the marker placed first is
    # the one whose runner pytest-trio uses.
    for item in items:
        if item.get_closest_marker("trio") is not None:
            item.add_marker(pytest.mark.trio(run=_bounded_run), append=False)


_real_stderr: list[int] = []


def pytest_configure(config: pytest.Config) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft > MEMORY_LIMIT:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))
    # The stacks must reach the terminal, not the capture of the test that
    # hangs (it is never shown if the process exits).
    capture = config.pluginmanager.getplugin("capturemanager")
    disabled = (
        contextlib.nullcontext()
        if capture is None  # run with -p no:capture
        else capture.global_and_fixture_disabled()
    )
    with disabled:
        _real_stderr.append(os.dup(sys.stderr.fileno()))


@pytest.fixture(autouse=True)
def _hard_time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    trio_test = request.node.get_closest_marker("trio") is not None
    limit = TRIO_TEST_LIMIT + CANCEL_LIMIT if trio_test else HARD_LIMIT
    faulthandler.dump_traceback_later(limit, exit=True, file=_real_stderr[0])
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _adieu_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Keep adieu's log records available to tests (``caplog``)."""
    caplog.set_level(logging.DEBUG, logger="adieu")


# TLS: one certificate authority for the whole run (``trustme``), a server
# certificate for "localhost", and a client context that trusts it.


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context

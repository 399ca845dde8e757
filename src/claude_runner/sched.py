"""A short scheduler slice for the thread that drives the agents (Linux 6.12+, EEVDF).

The stage loop sleeps in vfork until each new CLI has exec'd. The kernel then wakes it
on the CPU the child runs on, and with the default slice the loop waits there until the
child's slice ends, while the other CPU may idle. Measured with `perf sched` on 2 CPUs:
~0.57 ms of run-queue delay per spawn, a quarter of a 200-task run. A short slice lets
the woken loop run at once. The CPU share does not change (EEVDF slices set latency, not
bandwidth). SCHED_FLAG_RESET_ON_FORK keeps the short slice from the agents and from
helper threads.

Best effort: older kernels ignore the slice, and a refusal (seccomp, an unknown
architecture) leaves scheduling as it was. Only a SCHED_OTHER thread with nice >= 0 is
touched: reset-on-fork would otherwise also reset the agents' nice value.

Since the CLIs start in helper threads (``pipeline/scheduler.py``), the loop no longer
sleeps in vfork; what the short slice still buys it has not been measured since.
"""

from __future__ import annotations

import ctypes
import os
import platform

SLICE_NS = 100_000  # the shortest slice the kernel accepts
_SCHED_FLAG_RESET_ON_FORK = 0x01
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


class _SchedAttr(ctypes.Structure):  # struct sched_attr, SCHED_ATTR_SIZE_VER0
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    )


def short_slice_for_this_thread() -> bool:
    """Ask for a short slice for the calling thread; True when the kernel accepted it."""
    number = _SCHED_SETATTR.get(platform.machine())
    if number is None:
        return False
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            return False
        nice = os.getpriority(os.PRIO_PROCESS, 0)  # per thread on Linux
        if nice < 0:
            return False
        attr = _SchedAttr(
            size=ctypes.sizeof(_SchedAttr),
            sched_policy=os.SCHED_OTHER,
            sched_flags=_SCHED_FLAG_RESET_ON_FORK,
            sched_nice=nice,
            sched_runtime=SLICE_NS,
        )
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.syscall(number, 0, ctypes.byref(attr), 0)) == 0
    except (OSError, AttributeError):
        return False

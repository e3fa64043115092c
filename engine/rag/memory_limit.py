"""A ceiling on a worker process's own memory, so a file that unpacks to gigabytes fails alone.

Without one, a small file that expands when read (a .docx is a zip: 9 kB of it can
hold 6 MB of XML, which becomes ~95 MB of parsed tree) grows the parser until the
machine runs out, and the kernel's out-of-memory killer may then pick the window,
which holds the model, instead of the parser.

- Linux and the BSDs: ``RLIMIT_AS``, the address space. Every allocation past it
  fails; Python turns that into MemoryError, which the worker reports for that file.
  (``RLIMIT_DATA`` would leave out file mappings and reservations, but before Linux
  4.7 it missed mmap'd memory, which is where large Python objects live.)
- Windows has no setrlimit: the worker puts itself in a job object with a
  per-process memory limit (committed memory), which makes allocations fail the
  same way. Job objects nest since Windows 8, so this works inside a terminal's job.
- macOS accepts ``RLIMIT_AS`` but its kernel does not enforce it, and it has no
  per-process memory ceiling an unprivileged process can set; there a runaway
  parser is stopped only by the per-file time limit.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)


def limit_memory(limit_bytes: int) -> str:
    """Cap this process's memory at ``limit_bytes``; says how ("address space", "job object"), or "" when
    this system offers no way."""
    if limit_bytes <= 0:
        return ""
    try:
        if sys.platform == "win32":
            _join_limited_job(limit_bytes)
            return "job object"
        if sys.platform == "darwin":
            return ""  # accepted, not enforced (see the module docstring)
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft <= limit_bytes:
            return "address space"  # the user's own `ulimit -v` is lower still: keep it
        # The hard limit too: nothing this process runs later can lift the ceiling again.
        new_hard = limit_bytes if hard == resource.RLIM_INFINITY or hard > limit_bytes else hard
        resource.setrlimit(resource.RLIMIT_AS, (min(limit_bytes, new_hard), new_hard))
        return "address space"
    except (OSError, ValueError, AttributeError, ImportError) as exc:
        log.warning("could not limit the worker's memory: %s", exc)
        return ""


def job_limit_structure():
    """JOBOBJECT_EXTENDED_LIMIT_INFORMATION as a ctypes structure (fixed-width fields: DWORD is 32 bits on
    Windows, where ctypes.wintypes.DWORD is, but not elsewhere, where the layout is checked by the tests)."""
    import ctypes

    dword = ctypes.c_uint32

    class BasicLimits(ctypes.Structure):  # JOBOBJECT_BASIC_LIMIT_INFORMATION
        _fields_ = [
            ("PerProcessUserTimeLimit", ctypes.c_int64),
            ("PerJobUserTimeLimit", ctypes.c_int64),
            ("LimitFlags", dword),
            ("MinimumWorkingSetSize", ctypes.c_size_t),
            ("MaximumWorkingSetSize", ctypes.c_size_t),
            ("ActiveProcessLimit", dword),
            ("Affinity", ctypes.c_size_t),
            ("PriorityClass", dword),
            ("SchedulingClass", dword),
        ]

    class IoCounters(ctypes.Structure):  # IO_COUNTERS
        _fields_ = [
            (name, ctypes.c_uint64)
            for name in (
                "ReadOperationCount",
                "WriteOperationCount",
                "OtherOperationCount",
                "ReadTransferCount",
                "WriteTransferCount",
                "OtherTransferCount",
            )
        ]

    class ExtendedLimits(ctypes.Structure):  # JOBOBJECT_EXTENDED_LIMIT_INFORMATION
        _fields_ = [
            ("BasicLimitInformation", BasicLimits),
            ("IoInfo", IoCounters),
            ("ProcessMemoryLimit", ctypes.c_size_t),
            ("JobMemoryLimit", ctypes.c_size_t),
            ("PeakProcessMemoryUsed", ctypes.c_size_t),
            ("PeakJobMemoryUsed", ctypes.c_size_t),
        ]

    return ExtendedLimits


def _join_limited_job(limit_bytes: int) -> None:
    """Windows: put this process in a new job object whose processes may commit at most ``limit_bytes``."""
    if sys.platform != "win32":  # (and the type checker reads what follows as Windows code)
        raise OSError("job objects are Windows' own")
    import ctypes
    from ctypes import wintypes

    job_object_extended_limit_information = 9  # JOBOBJECTINFOCLASS
    job_object_limit_process_memory = 0x100
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateJobObjectW.restype = wintypes.HANDLE
    kernel32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
    kernel32.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        raise ctypes.WinError(ctypes.get_last_error())
    limits = job_limit_structure()()
    limits.BasicLimitInformation.LimitFlags = job_object_limit_process_memory
    limits.ProcessMemoryLimit = limit_bytes
    if not kernel32.SetInformationJobObject(
        job, job_object_extended_limit_information, ctypes.byref(limits), ctypes.sizeof(limits)
    ):
        raise ctypes.WinError(ctypes.get_last_error())
    if not kernel32.AssignProcessToJobObject(job, kernel32.GetCurrentProcess()):
        raise ctypes.WinError(ctypes.get_last_error())
    # The handle stays open for the life of the process: the job, and its limit, last while it has
    # processes anyway, and keeping the handle costs nothing.

"""Runtime hook of the frozen Locus: runs before the app's first import.

On Linux the bootloader points LD_LIBRARY_PATH at the bundle so that the app finds
its own libraries. Programs the app starts (xdg-open, a browser, a file manager)
must see the user's original value, or they load the bundle's Qt and OpenSSL and
crash. The dynamic linker has read the variable already, so restoring it here does
not change what this process loads; the app's own workers are this executable,
which the bootloader sets up again.
"""

import os
import sys

if sys.platform.startswith("linux"):
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)

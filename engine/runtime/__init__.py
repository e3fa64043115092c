"""The local runtime: llama.cpp in this process (see docs/architecture.md).

Before any module here loads llama.cpp, libgomp (the OpenMP runtime llama.cpp's CPU backend is
built with) is told to spin only briefly when a thread waits: see ``threads.settle_openmp``.
"""

from engine.runtime.threads import settle_openmp

settle_openmp()

"""racelens pipeline package."""

import os

# pyarrow allocates from mimalloc unless this says otherwise, and reads it once, when it is
# first imported: so here, before anything imports it. mimalloc kept what the timing half's
# Arrow tables freed (WriteResults' parts and files) in the launcher's RSS; the C library's
# malloc gives it back (pipeline/memory.py).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
# OpenBLAS (numpy's, and scipy's own copy, which the workers' zygote imports) starts a thread
# per further core when loaded: in the zygote, a thread that no forked worker has (and that
# made it warn that workers may hang, on every run). The runs use one process per core, and
# BLAS only for small products (face distances), so one thread each is all they need.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

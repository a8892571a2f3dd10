"""racelens pipeline package."""

import os

# pyarrow allocates from mimalloc unless this says otherwise, and reads it once, when it is
# first imported: so here, before anything imports it. mimalloc kept what the timing half's
# Arrow tables freed (WriteResults' parts and files) in the launcher's RSS; the C library's
# malloc gives it back (pipeline/memory.py).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

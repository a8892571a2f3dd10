"""racelens pipeline package."""

import logging
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


# Importing Beam warns on the root logger that apitools (a GCP extra) is missing: noise for a
# local race on the terminal of every racelens process (the launcher, each Dask worker, the
# live demo's drip). Dropped where it is logged, whatever the logging's set-up after.
BEAM_APITOOLS_WARNING = "apitools not found"


def _not_beams_apitools_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(BEAM_APITOOLS_WARNING)


logging.getLogger().addFilter(_not_beams_apitools_warning)

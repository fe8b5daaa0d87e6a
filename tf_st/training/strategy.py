"""Kept for code that imports it here: the strategy helpers live in ``tf_st.distribute``
(a bottom layer, so attacks, methods and evaluation can use them without importing the
training package)."""

from tf_st.distribute import (distribute_batches, make_strategy, num_workers,  # noqa: F401
                              run_sharded, set_threads, split_cpu, worker_index)

"""The papers' diagnostics, one command each: ``python -m tf_st.analysis <name> ...``.

==============  ====================================================================
collaborative   benign vs collaborative CE per budget, image grid (ST Fig. 1-2, Tab. 5)
landscape       CE over the collaborative/random plane (ST Fig. 3)
angles          adversarial vs collaborative perturbation angles (ST Fig. 7, App. B)
curves          per-epoch accuracies or logged terms of runs (ST Fig. 4, 5, 8, 9, 10)
sweep           beta x seed trainer grid, means with 95% CIs (ST Fig. 6, Table 1)
discrepancy     prediction discrepancy and confusion matrices (CAT Eq. 7, Fig. 1)
fat_cost        attack gradient steps per example per epoch (FAT Fig. 5)
==============  ====================================================================

Each works on exported SavedModels or trainer run directories (``--run_dir``,
``--saved_model``), writes a PNG and the numbers behind it (CSV/JSON) into
``--output_dir``, and prints progress on long work.  The computations are plain
functions of a logits function and arrays (``collaborative.measure``,
``landscape.surface``, ``angles.angles``, ``discrepancy.discrepancy``, ``sweep.mean_ci``),
so they can be used from Python too.
"""

SUBCOMMANDS = ("collaborative", "landscape", "angles", "curves", "sweep", "discrepancy",
               "fat_cost")

"""Helper package of the alliance–outcome research compendium.

The modules, in the order a dataset passes through them (read → clean →
features → models → analyses → figures and report), with the tools beside
that path below.

Read (notebook 01)
    :mod:`helpers.config` (the study config that maps a user's columns to the
    schema), :mod:`helpers.loading` (CSV/TSV, Excel, SPSS, Stata and Parquet
    readers), :mod:`helpers.textscan` (line and field counts of a text file
    without parsing it), :mod:`helpers.reshape` (wide files to long),
    :mod:`helpers.session_dates` (sessions given by date),
    :mod:`helpers.schema` (the canonical long schema, one row per
    patient-session) and :mod:`helpers.validation` (readable reports of what is
    wrong with an input; the one row-list formatter and numeric-column
    converter).
Clean (notebook 01)
    :mod:`helpers.ids` (identifiers written the same way),
    :mod:`helpers.cleaning` (logged cleaning rules and the exclusion ledger),
    :mod:`helpers.scales` (item means to totals; columns on the wrong scale
    stopped), :mod:`helpers.scoring` (instrument scoring, reliable change) and
    :mod:`helpers.pipeline` (the whole cleaning step, as run by notebook 01 and
    the CLI).
Features
    :mod:`helpers.features` (within/between disaggregation, lags, early
    alliance) and :mod:`helpers.profile` (what a study has: raters,
    instruments, levels, truth; sections skip what it lacks).
Models (notebook 03)
    :mod:`helpers.models` (lme4-style mixed models, fitted by the vectorised
    engine or statsmodels' ``MixedLM``, checked like lme4), :mod:`helpers.engine`
    (the vectorised REML/ML engine for nested models), :mod:`helpers.ddf`
    (Satterthwaite and Kenward-Roger df), :mod:`helpers.intervals`
    (profile-likelihood intervals), :mod:`helpers.effects` (effect sizes, R²,
    diagnostics tables, parametric bootstrap) and :mod:`helpers.predictions`
    (predicted trajectories and other tables from a fit).
Analyses (notebooks 02, 04 and 05)
    :mod:`helpers.explore` (descriptive tables), :mod:`helpers.ruptures`
    (rupture–repair detection and episode summaries), :mod:`helpers.moderators`
    (rater features, simple slopes, Wald tests, early/late alliance),
    :mod:`helpers.associations` (the patient-level alliance–outcome r),
    :mod:`helpers.agreement` (client–therapist rater agreement),
    :mod:`helpers.meta_analysis` (effect-size conversions and the meta-analytic
    benchmark) and :mod:`helpers.stats_common` (the argument checks and Fisher-z
    interval those three share).
Figures and report (notebook 06, ``make all``)
    :mod:`helpers.style` and :mod:`helpers.plots` (one figure style, the plot
    functions, save_figure), :mod:`helpers.present` (tables as display
    strings), :mod:`helpers.narrative` (sentences rendered from results),
    :mod:`helpers.runner` (the notebooks run with their parameters),
    :mod:`helpers.schedule` (which notebooks are out of date; independent ones
    side by side), :mod:`helpers.warm_kernels` and :mod:`helpers.kernel_manager`
    (kernels forked from one process with the imports done),
    :mod:`helpers.report` (the HTML report),
    :mod:`helpers.notebook_files` (no timestamps or widget state in stored
    notebooks) and :mod:`helpers.provenance` (hashes, versions, commit).

Beside the path
    :mod:`helpers.power` (simulation-based power of a planned design, notebook
    07); :mod:`helpers.explorer` (interactive explorers, notebook 08);
    :mod:`helpers.simulate` (the simulated demo study and its truth) and
    :mod:`helpers.scenarios` (simulated study shapes for the scenario suite);
    :mod:`helpers.paths` (project folders) and :mod:`helpers.safety` (atomic
    writes, output folders that hold no input); :mod:`helpers.errors` (the one
    error hierarchy: a base ``HelpersError``, data errors that print as a
    report without a traceback, settings, model, engine and plot errors);
    :mod:`helpers.cli` (``python -m helpers …``).

Importing the package prints nothing and touches no files.
"""

__version__ = "0.1.0"

"""Helper package of the alliance–outcome research compendium.

One module per stage of the analysis:

- :mod:`helpers.paths` — project folders, derived from this file's location;
- :mod:`helpers.simulate` — the simulated demo study and its known truth;
- :mod:`helpers.loading` — readers for CSV/TSV, Excel, SPSS, Stata and Parquet;
- :mod:`helpers.config` — the study config that maps a user's columns to the schema;
- :mod:`helpers.schema` — the canonical long schema (one row per patient-session);
- :mod:`helpers.validation` — readable reports of what is wrong with an input;
- :mod:`helpers.scoring` — instrument scoring and reliable change;
- :mod:`helpers.cleaning` — logged cleaning rules and the exclusion ledger;
- :mod:`helpers.scales` — item means converted to totals; columns on the wrong scale stopped;
- :mod:`helpers.features` — within/between disaggregation, lags, early alliance;
- :mod:`helpers.pipeline` — the whole cleaning step, as run by notebook 01 and the CLI;
- :mod:`helpers.explore` — descriptive tables (notebook 02);
- :mod:`helpers.models` — lme4-style mixed models on statsmodels, checked like lme4;
- :mod:`helpers.ddf` — Satterthwaite and Kenward-Roger df for fixed effects (lmerTest, pbkrtest);
- :mod:`helpers.effects` — effect sizes, R², diagnostics tables, parametric bootstrap;
- :mod:`helpers.ruptures` — rupture–repair detection and summaries (notebook 04);
- :mod:`helpers.benchmarks` — effect-size conversions and the meta-analytic benchmark;
- :mod:`helpers.style` and :mod:`helpers.plots` — one figure style, plot functions, save_figure;
- :mod:`helpers.present` — the one presentation layer: tables as display strings;
- :mod:`helpers.provenance` — hashes, versions, commit;
- :mod:`helpers.runner` and :mod:`helpers.report` — ``make all`` and its HTML report;
- :mod:`helpers.cli` — ``python -m helpers …``.

Importing the package prints nothing and touches no files.
"""

__version__ = "0.1.0"

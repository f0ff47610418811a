# Reference likelihood-ratio comparisons from lme4 for tests/test_models.py
# (likelihood_ratio_test).
#
# Regenerate (needs R >= 4 with lme4 and jsonlite; CI does not run this):
#
#     Rscript tests/reference/lrt_reference.R
#
# Writes lrt_reference.json beside this script: for each comparison the two formulas, the
# criterion (REML or ML), lme4's logLik() and its df for both models, the statistic
# 2 (logLik_full - logLik_restricted) and R's plain chi-square p-value, as anova() prints it
# (pchisq(statistic, df_full - df_restricted, lower.tail = FALSE)).  R has no boundary
# mixture; the tests compute the mixtures by hand from these statistics.
#
# A formula without random terms is fitted by lm(); its logLik(fit, REML = ...) is lme4's
# criterion at zero random-effect variance.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
out_dir <- if (length(script_arg)) dirname(normalizePath(sub("^--file=", "", script_arg))) else "."

datasets <- list(
  sleepstudy = read.csv(file.path(out_dir, "sleepstudy.csv")),
  three_level = read.csv(file.path(out_dir, "three_level.csv"))
)

control <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6))

fit <- function(data, formula, reml) {
  f <- as.formula(formula)
  if (is.null(findbars(f))) {
    m <- lm(f, data = data)
    ll <- logLik(m, REML = reml)
  } else {
    m <- lmer(f, data = data, REML = reml, control = control)
    ll <- logLik(m)
  }
  list(logLik = as.numeric(ll), df = as.integer(attr(ll, "df")))
}

tl_fixed <- "y ~ x_within + x_between + session"
comparisons <- list(
  list(id = "sleep_fixed_days_ml", data = "sleepstudy", reml = FALSE,
       restricted = "Reaction ~ 1 + (1 | Subject)", full = "Reaction ~ Days + (1 | Subject)"),
  list(id = "sleep_fixed_and_slope_ml", data = "sleepstudy", reml = FALSE,
       restricted = "Reaction ~ 1 + (1 | Subject)",
       full = "Reaction ~ Days + (1 + Days || Subject)"),
  list(id = "sleep_lm_vs_corr_slope_reml", data = "sleepstudy", reml = TRUE,
       restricted = "Reaction ~ Days", full = "Reaction ~ Days + (1 + Days | Subject)"),
  list(id = "sleep_uncorr_vs_corr_reml", data = "sleepstudy", reml = TRUE,
       restricted = "Reaction ~ Days + (1 + Days || Subject)",
       full = "Reaction ~ Days + (1 + Days | Subject)"),
  list(id = "tl_lm_vs_two_intercepts_reml", data = "three_level", reml = TRUE,
       restricted = tl_fixed,
       full = paste(tl_fixed, "+ (1 | therapist_id) + (1 | patient_id)")),
  list(id = "tl_add_patient_slope_uncorr_reml", data = "three_level", reml = TRUE,
       restricted = paste(tl_fixed, "+ (1 | therapist_id) + (1 | patient_id)"),
       full = paste(tl_fixed, "+ (1 | therapist_id) + (1 + session || patient_id)")),
  list(id = "tl_add_therapist_slope_corr_reml", data = "three_level", reml = TRUE,
       restricted = paste(tl_fixed, "+ (1 | therapist_id) + (1 | patient_id)"),
       full = paste(tl_fixed, "+ (1 + session | therapist_id) + (1 | patient_id)")),
  list(id = "tl_add_two_uncorr_slopes_reml", data = "three_level", reml = TRUE,
       restricted = paste(tl_fixed, "+ (1 | therapist_id) + (1 + session || patient_id)"),
       full = paste(tl_fixed, "+ (1 + x_within || therapist_id) +",
                    "(1 + session + x_within || patient_id)"))
)

records <- lapply(comparisons, function(cmp) {
  data <- datasets[[cmp$data]]
  m0 <- fit(data, cmp$restricted, cmp$reml)
  m1 <- fit(data, cmp$full, cmp$reml)
  stat <- 2 * (m1$logLik - m0$logLik)
  df <- m1$df - m0$df
  c(cmp, list(
    logLik_restricted = m0$logLik, df_restricted = m0$df,
    logLik_full = m1$logLik, df_full = m1$df,
    statistic = stat, df = df,
    p_chisq = pchisq(stat, df, lower.tail = FALSE)
  ))
})

meta <- list(
  r_version = R.version.string,
  lme4_version = as.character(packageVersion("lme4")),
  comparisons = records
)
writeLines(
  toJSON(meta, auto_unbox = TRUE, digits = I(15), pretty = TRUE),
  file.path(out_dir, "lrt_reference.json")
)

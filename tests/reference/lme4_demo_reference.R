# lme4 reference fits of notebook 03's models on the demo study, for tests/test_models_demo.py.
#
# Regenerate (needs R >= 4 with lme4, jsonlite and numDeriv; CI does not run this), after
# `.venv/bin/python tests/reference/make_demo_model_data.py` if the cleaning has changed:
#
#     Rscript tests/reference/lme4_demo_reference.R
#
# Reads, beside this script:
#   demo_model_data.csv          model columns of the processed demo sessions
#   demo_patient_model_data.csv  model columns of the demo patient table
# Writes, beside this script (same layout as lme4_reference.R's files):
#   lme4_demo_fixed.csv    model_id, reml, term, estimate, se   (se = sqrt(diag(vcov())))
#   lme4_demo_varcomp.csv  model_id, reml, grp, var1, var2, vcov, sdcor
#                          (as.data.frame(VarCorr(fit)); var2 set for covariances)
#   lme4_demo_fits.json    one record per fit: formula, data file and its MD5, logLik, df,
#                          nobs, ngroups, theta, the optimiser kept, the criterion of every
#                          optimiser and their spread, numDeriv gradient and smallest
#                          Hessian eigenvalue of the profiled deviance, isSingular
#
# These fits are separate from lme4_reference.R because tests/test_models.py fits every
# entry of that script's lme4_fits.json on its own two data sets.
#
# Every model is fitted by REML (the main model also by ML) with three optimisers at tight
# tolerances (minqa bobyqa, nloptr BOBYQA, Nelder-Mead); the fit with the lowest criterion
# is kept.  lmer drops rows with a missing model variable (na.omit), as fit_mixed does.
# lme4 expands (1 + session_c || patient_id) into (1 | patient_id) + (0 + session_c |
# patient_id), two independent variance components named "patient_id" and "patient_id.1".
#
# To add a model: add one entry to `models` (and a loader to `datasets` for a new file).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(numDeriv)
})

set.seed(1)  # nothing below is random by design
script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
out_dir <- if (length(script_arg)) dirname(normalizePath(sub("^--file=", "", script_arg))) else "."

# ---- data sets (read exactly as written: 17 significant digits, "NA" for missing) --------
data_files <- c(
  demo_sessions = "demo_model_data.csv",
  demo_patients = "demo_patient_model_data.csv"
)
read_demo <- function(name) {
  d <- read.csv(file.path(out_dir, data_files[[name]]), na.strings = "NA",
                colClasses = c(therapist_id = "character", patient_id = "character"))
  d$therapist_id <- factor(d$therapist_id)
  d$patient_id <- factor(d$patient_id)
  d
}
datasets <- list(
  demo_sessions = function() read_demo("demo_sessions"),
  demo_patients = function() read_demo("demo_patients")
)

# ---- models (model_id, data set, lme4 formula, criteria) ---------------------------------
fixed_session <- "alliance_within_lag + alliance_between_c + session_c"
models <- list(
  list(id = "demo_null_outcome", data = "demo_sessions", reml = TRUE,
       formula = "outcome ~ 1 + (1 | therapist_id) + (1 | patient_id)"),
  list(id = "demo_null_alliance", data = "demo_sessions", reml = TRUE,
       formula = "alliance ~ 1 + (1 | therapist_id) + (1 | patient_id)"),
  list(id = "demo_main", data = "demo_sessions", reml = c(TRUE, FALSE),
       formula = paste("outcome ~", fixed_session,
                       "+ (1 + session_c || patient_id) + (1 | therapist_id)")),
  list(id = "demo_two_level_corr", data = "demo_sessions", reml = TRUE,
       formula = paste("outcome ~", fixed_session, "+ (1 + session_c | patient_id)")),
  list(id = "demo_three_level_corr", data = "demo_sessions", reml = TRUE,
       formula = paste("outcome ~", fixed_session,
                       "+ (1 + session_c | patient_id) + (1 | therapist_id)")),
  list(id = "demo_reverse", data = "demo_sessions", reml = TRUE,
       formula = paste("alliance ~ outcome_within_lag + outcome_between + session_c",
                       "+ (1 + session_c || patient_id) + (1 | therapist_id)")),
  list(id = "demo_within_slope", data = "demo_sessions", reml = TRUE,
       formula = paste("outcome ~", fixed_session,
                       "+ (1 + session_c + alliance_within_lag || patient_id)",
                       "+ (1 | therapist_id)")),
  list(id = "demo_patient_early", data = "demo_patients", reml = TRUE,
       formula = "outcome_last ~ alliance_early_c + outcome_intake_c + (1 | therapist_id)"),
  list(id = "demo_patient_bwi", data = "demo_patients", reml = TRUE,
       formula = paste("outcome_last ~ alliance_therapist_mean_c + alliance_patient_dev",
                       "+ outcome_intake_c + (1 | therapist_id)"))
)

# ---- fitting ---------------------------------------------------------------------------
controls <- list(
  bobyqa = lmerControl(optimizer = "bobyqa", calc.derivs = FALSE,
                       optCtrl = list(rhoend = 1e-12, maxfun = 1e6)),
  nloptwrap_bobyqa = lmerControl(optimizer = "nloptwrap", calc.derivs = FALSE,
                                 optCtrl = list(algorithm = "NLOPT_LN_BOBYQA",
                                                xtol_rel = 1e-14, ftol_rel = 1e-16,
                                                ftol_abs = 1e-16, maxeval = 1e6)),
  nelder_mead = lmerControl(optimizer = "Nelder_Mead", calc.derivs = FALSE,
                            optCtrl = list(FtolAbs = 1e-14, FtolRel = 1e-15,
                                           XtolRel = 1e-12, maxfun = 1e6))
)

fmt <- function(x) sprintf("%.17g", x)

fixed_rows <- list()
varcomp_rows <- list()
fit_records <- list()

for (m in models) {
  d <- datasets[[m$data]]()
  data_md5 <- unname(tools::md5sum(file.path(out_dir, data_files[[m$data]])))
  for (reml in m$reml) {
    fits <- lapply(controls, function(ctrl) {
      lmer(as.formula(m$formula), data = d, REML = reml, control = ctrl)
    })
    crit <- sapply(fits, function(f) as.numeric(-2 * logLik(f)))
    best_name <- names(fits)[which.min(crit)]
    fit <- fits[[best_name]]
    theta <- getME(fit, "theta")
    devfun <- lmer(as.formula(m$formula), data = d, REML = reml, devFunOnly = TRUE)
    grad <- numDeriv::grad(devfun, theta)
    hess <- numDeriv::hessian(devfun, theta)
    hess_eigen <- eigen(hess, symmetric = TRUE, only.values = TRUE)$values

    cf <- summary(fit)$coefficients
    fixed_rows[[length(fixed_rows) + 1]] <- data.frame(
      model_id = m$id, reml = reml, term = rownames(cf),
      estimate = fmt(cf[, "Estimate"]), se = fmt(sqrt(diag(as.matrix(vcov(fit))))),
      stringsAsFactors = FALSE
    )
    vc <- as.data.frame(VarCorr(fit))
    varcomp_rows[[length(varcomp_rows) + 1]] <- data.frame(
      model_id = m$id, reml = reml, grp = vc$grp,
      var1 = ifelse(is.na(vc$var1), "", vc$var1), var2 = ifelse(is.na(vc$var2), "", vc$var2),
      vcov = fmt(vc$vcov), sdcor = fmt(vc$sdcor), stringsAsFactors = FALSE
    )
    ll <- logLik(fit)
    fit_records[[length(fit_records) + 1]] <- list(
      model_id = m$id, data = m$data, data_file = data_files[[m$data]], data_md5 = data_md5,
      formula = m$formula, reml = reml,
      logLik = as.numeric(ll), df = attr(ll, "df"), nobs = nobs(fit),
      ngroups = as.list(ngrps(fit)), theta = unname(theta),
      optimizer = best_name,
      criterion_by_optimizer = as.list(crit),
      optimizer_spread = max(crit) - min(crit),
      max_abs_gradient = max(abs(grad)),
      min_hessian_eigenvalue = min(hess_eigen),
      singular = isSingular(fit)
    )
  }
}

write.csv(do.call(rbind, fixed_rows), file.path(out_dir, "lme4_demo_fixed.csv"),
          row.names = FALSE, quote = TRUE)
write.csv(do.call(rbind, varcomp_rows), file.path(out_dir, "lme4_demo_varcomp.csv"),
          row.names = FALSE, quote = TRUE)
meta <- list(
  r_version = paste(R.version$major, R.version$minor, sep = "."),
  lme4_version = as.character(packageVersion("lme4")),
  fits = fit_records
)
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out_dir, "lme4_demo_fits.json"))
cat("wrote", length(fit_records), "reference fits to", basename(out_dir), "\n")

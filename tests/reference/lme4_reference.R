# Reference fits from lme4 for tests/test_models.py.
#
# Regenerate (needs R >= 4 with lme4, jsonlite and numDeriv; CI does not run this):
#
#     Rscript tests/reference/lme4_reference.R
#
# Writes, beside this script:
#   sleepstudy.csv        lme4's sleepstudy data, exported once
#   lme4_fixed.csv        model_id, reml, term, estimate, se        (se from vcov(), i.e.
#                         sigma^2 (X' V^-1 X)^-1 at the estimates)
#   lme4_varcomp.csv      model_id, reml, grp, var1, var2, vcov, sdcor
#                         (as.data.frame(VarCorr(fit)); var2 set for covariances)
#   lme4_fits.json        one record per model and criterion: formula, logLik, nobs,
#                         ngroups, theta, and the optimum checks described below
#
# Every model is fitted with three optimisers at tight tolerances (minqa bobyqa,
# nloptr BOBYQA, Nelder-Mead); the fit with the best criterion is kept, the spread of the
# criterion across the three is recorded (optimizer_spread), and the gradient and Hessian
# of lme4's profiled deviance function are taken at the kept theta with numDeriv.
#
# Regenerating reproduces the values to about 1e-7 relative (theta of the flattest optima),
# not byte for byte: repeated runs on the same machine alternate between two last-digit
# variants, with seeds fixed; the difference is far below the tolerances of the tests.
#
# To add a model: add a data set loader to `datasets` (if new) and one entry to `models`.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(numDeriv)
})

set.seed(1)  # nothing below is random by design
script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
out_dir <- if (length(script_arg)) dirname(normalizePath(sub("^--file=", "", script_arg))) else "."

# ---- data sets -------------------------------------------------------------------------
sleep_path <- file.path(out_dir, "sleepstudy.csv")
sleep_out <- sleepstudy
sleep_out$Subject <- as.character(sleep_out$Subject)
write.csv(sleep_out, sleep_path, row.names = FALSE)

datasets <- list(
  sleepstudy = function() {
    d <- read.csv(sleep_path, colClasses = c(Subject = "character"))
    d$Subject <- factor(d$Subject)
    d
  },
  three_level = function() {
    d <- read.csv(file.path(out_dir, "three_level.csv"),
                  colClasses = c(therapist_id = "character", patient_id = "character"))
    d$therapist_id <- factor(d$therapist_id)
    d$patient_id <- factor(d$patient_id)
    d
  }
)

# ---- models (model_id, data set, lme4 formula); each is fitted by REML and by ML --------
models <- list(
  list(id = "sleep_ri", data = "sleepstudy",
       formula = "Reaction ~ Days + (1 | Subject)"),
  list(id = "sleep_slope_corr", data = "sleepstudy",
       formula = "Reaction ~ Days + (1 + Days | Subject)"),
  list(id = "sleep_slope_uncorr", data = "sleepstudy",
       formula = "Reaction ~ Days + (1 + Days || Subject)"),
  list(id = "sleep_days_factor", data = "sleepstudy",
       formula = "Reaction ~ factor(Days) + (1 | Subject)"),
  list(id = "tl_patient_slope_corr", data = "three_level",
       formula = "y ~ x_within + x_between + session + (1 + session | patient_id)"),
  list(id = "tl_nested_ri", data = "three_level",
       formula = "y ~ x_within + x_between + session + (1 | therapist_id) + (1 | patient_id)"),
  list(id = "tl_nested_patient_slope", data = "three_level",
       formula = paste("y ~ x_within + x_between + session + (1 | therapist_id)",
                       "+ (1 + session || patient_id)")),
  list(id = "tl_nested_therapist_slope", data = "three_level",
       formula = paste("y ~ x_within + x_between + session + (1 + session | therapist_id)",
                       "+ (1 | patient_id)"))
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
  for (reml in c(TRUE, FALSE)) {
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
      model_id = m$id, data = m$data, formula = m$formula, reml = reml,
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

write.csv(do.call(rbind, fixed_rows), file.path(out_dir, "lme4_fixed.csv"),
          row.names = FALSE, quote = TRUE)
write.csv(do.call(rbind, varcomp_rows), file.path(out_dir, "lme4_varcomp.csv"),
          row.names = FALSE, quote = TRUE)
meta <- list(
  r_version = paste(R.version$major, R.version$minor, sep = "."),
  lme4_version = as.character(packageVersion("lme4")),
  fits = fit_records
)
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out_dir, "lme4_fits.json"))
cat("wrote", length(fit_records), "reference fits to", basename(out_dir), "\n")

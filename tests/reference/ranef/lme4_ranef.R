# Reference conditional modes of random effects from lme4, for tests/test_predictions.py.
#
# Regenerate (needs R >= 4 with lme4; CI does not run this):
#
#     Rscript tests/reference/ranef/lme4_ranef.R
#
# Reads ../sleepstudy.csv and ../three_level.csv (the data sets of lme4_reference.R) and
# writes, beside this script:
#   lme4_ranef.csv   model_id, reml, grpvar, term, grp, condval, condsd
#                    = as.data.frame(ranef(fit, condVar = TRUE)): the conditional modes
#                    (BLUPs) and conditional SDs of every random effect.  lme4's condVar is
#                    the conditional variance of b given y at the estimated variance
#                    components AND fixed effects (sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1
#                    Lambda'); it leaves out the uncertainty of the fixed-effect estimates.
#   lme4_vcov.csv    model_id, term1, term2, vcov: the full vcov(fit) (fixed-effect
#                    covariance sigma^2 (X' V^-1 X)^-1)
#   lme4_fitted.csv  model_id, row (1-based row of the data file), fitted, residual for the
#                    models in `fitted_models`: fitted(fit) = X beta + Z b (conditional)
#   lme4_ranef_fits.json   per model: formula, reml, logLik, theta, sigma, optimizer
#
# Each model is fitted with three optimisers at tight tolerances and the best criterion is
# kept, as in ../lme4_reference.R, so the modes are those of the optimum to ~1e-7.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
out_dir <- if (length(script_arg)) dirname(normalizePath(sub("^--file=", "", script_arg))) else "."
data_dir <- dirname(out_dir)

datasets <- list(
  sleepstudy = function() {
    d <- read.csv(file.path(data_dir, "sleepstudy.csv"), colClasses = c(Subject = "character"))
    d$Subject <- factor(d$Subject)
    d
  },
  three_level = function() {
    d <- read.csv(file.path(data_dir, "three_level.csv"),
                  colClasses = c(therapist_id = "character", patient_id = "character"))
    d$therapist_id <- factor(d$therapist_id)
    d$patient_id <- factor(d$patient_id)
    d
  }
)

models <- list(
  list(id = "sleep_ri", data = "sleepstudy", reml = TRUE,
       formula = "Reaction ~ Days + (1 | Subject)"),
  list(id = "sleep_slope_corr", data = "sleepstudy", reml = TRUE,
       formula = "Reaction ~ Days + (1 + Days | Subject)"),
  list(id = "sleep_slope_corr_ml", data = "sleepstudy", reml = FALSE,
       formula = "Reaction ~ Days + (1 + Days | Subject)"),
  list(id = "sleep_slope_uncorr", data = "sleepstudy", reml = TRUE,
       formula = "Reaction ~ Days + (1 + Days || Subject)"),
  list(id = "tl_nested_ri", data = "three_level", reml = TRUE,
       formula = "y ~ x_within + x_between + session + (1 | therapist_id) + (1 | patient_id)"),
  list(id = "tl_nested_patient_slope", data = "three_level", reml = TRUE,
       formula = paste("y ~ x_within + x_between + session + (1 | therapist_id)",
                       "+ (1 + session || patient_id)")),
  list(id = "tl_nested_therapist_slope", data = "three_level", reml = TRUE,
       formula = paste("y ~ x_within + x_between + session + (1 + session | therapist_id)",
                       "+ (1 | patient_id)")),
  list(id = "tl_nested_key", data = "three_level", reml = TRUE,
       formula = "y ~ x_within + x_between + session + (1 | therapist_id/patient_id)")
)

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

fitted_models <- c("sleep_slope_corr", "tl_nested_patient_slope")

fmt <- function(x) sprintf("%.12g", x)  # 12 digits: far below the tests' tolerances
rows <- list()
vcov_rows <- list()
fitted_rows <- list()
records <- list()
for (m in models) {
  d <- datasets[[m$data]]()
  fits <- lapply(controls, function(ctrl) {
    lmer(as.formula(m$formula), data = d, REML = m$reml, control = ctrl)
  })
  crit <- sapply(fits, function(f) as.numeric(-2 * logLik(f)))
  best <- names(fits)[which.min(crit)]
  fit <- fits[[best]]
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  rows[[length(rows) + 1]] <- data.frame(
    model_id = m$id, reml = m$reml, grpvar = as.character(re$grpvar),
    term = as.character(re$term), grp = as.character(re$grp),
    condval = fmt(re$condval), condsd = fmt(re$condsd), stringsAsFactors = FALSE
  )
  vc <- as.matrix(vcov(fit))
  grid <- expand.grid(term1 = rownames(vc), term2 = colnames(vc), stringsAsFactors = FALSE)
  vcov_rows[[length(vcov_rows) + 1]] <- data.frame(
    model_id = m$id, term1 = grid$term1, term2 = grid$term2,
    vcov = fmt(vc[cbind(grid$term1, grid$term2)]), stringsAsFactors = FALSE
  )
  if (m$id %in% fitted_models) {
    fitted_rows[[length(fitted_rows) + 1]] <- data.frame(
      model_id = m$id, row = seq_len(nrow(d)), fitted = fmt(fitted(fit)),
      residual = fmt(residuals(fit)), stringsAsFactors = FALSE
    )
  }
  records[[length(records) + 1]] <- list(
    model_id = m$id, data = m$data, formula = m$formula, reml = m$reml,
    logLik = as.numeric(logLik(fit)), theta = unname(getME(fit, "theta")),
    sigma = sigma(fit), optimizer = best, optimizer_spread = max(crit) - min(crit)
  )
}
write.csv(do.call(rbind, rows), file.path(out_dir, "lme4_ranef.csv"), row.names = FALSE)
write.csv(do.call(rbind, vcov_rows), file.path(out_dir, "lme4_vcov.csv"), row.names = FALSE)
write.csv(do.call(rbind, fitted_rows), file.path(out_dir, "lme4_fitted.csv"), row.names = FALSE)
meta <- list(
  r_version = paste(R.version$major, R.version$minor, sep = "."),
  lme4_version = as.character(packageVersion("lme4")),
  fits = records
)
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out_dir, "lme4_ranef_fits.json"))
cat("wrote", length(records), "reference fits to", basename(out_dir), "\n")

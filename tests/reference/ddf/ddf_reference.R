# lmerTest / pbkrtest references of small-sample degrees of freedom, for tests/test_ddf.py.
#
# Regenerate (needs R >= 4 with lme4, lmerTest, pbkrtest and jsonlite; CI does not run this),
# after `.venv/bin/python tests/reference/ddf/make_ddf_data.py` if that script changed:
#
#     Rscript tests/reference/ddf/ddf_reference.R
#
# Reads ../sleepstudy.csv, ../three_level.csv, ../demo_model_data.csv and the files written by
# make_ddf_data.py beside this script.  Writes, beside this script:
#   ddf_coef.csv      model_id, reml, term, estimate, se, df_satt, t_satt, p_satt, and for REML
#                     fits se_kr, df_kr, t_kr, p_kr (summary(fit, ddf = ...)$coefficients;
#                     se_kr = sqrt(diag(pbkrtest::vcovAdj(fit))))
#   ddf_vcov_kr.csv   model_id, term, term2, vcov, vcov_kr  (vcov() and vcovAdj(), REML fits)
#   ddf_contrasts.csv model_id, reml, contrast_id, method, F, ndf, ddf, p, F_scaling
#                     (lmerTest::contestMD; for Kenward-Roger also pbkrtest::KRmodcomp's
#                     F.scaling; contrasts are given by rows of term weights, see `models`)
#   ddf_fits.json     per fit: formula, data file and MD5, theta, sigma, varcomp
#                     (as.data.frame(VarCorr())), isSingular, lmerTest's vcov_varpar and the
#                     warnings lmerTest raised, contrast matrices
#
# Fits use bobyqa with tight tolerances (rhoend 1e-12) so that the optimum is as close to
# the exact one as lme4 gets; lmerTest's own Hessian and Jacobian are numDeriv's (Richardson
# extrapolation).  The data are read exactly as written.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
out_dir <- if (length(script_arg)) dirname(normalizePath(sub("^--file=", "", script_arg))) else "."
ref_dir <- dirname(out_dir)

data_files <- c(
  sleepstudy = file.path(ref_dir, "sleepstudy.csv"),
  three_level = file.path(ref_dir, "three_level.csv"),
  demo = file.path(ref_dir, "demo_model_data.csv"),
  sleep_unbalanced = file.path(out_dir, "sleep_unbalanced.csv"),
  oneway_balanced = file.path(out_dir, "oneway_balanced.csv"),
  oneway_singular = file.path(out_dir, "oneway_singular.csv")
)
factors <- list(
  sleepstudy = "Subject", sleep_unbalanced = "Subject",
  three_level = c("therapist_id", "patient_id"), demo = c("therapist_id", "patient_id"),
  oneway_balanced = "group", oneway_singular = "group"
)
read_data <- function(name) {
  cols <- factors[[name]]
  classes <- setNames(rep("character", length(cols)), cols)
  d <- read.csv(data_files[[name]], na.strings = "NA", colClasses = classes)
  for (col in cols) d[[col]] <- factor(d[[col]])
  d
}

# Contrasts: a list of rows, each a named vector of term weights (other terms 0).
tl_fixed <- "y ~ x_within + x_between + session"
demo_fixed <- "outcome ~ alliance_within_lag + alliance_between_c + session_c"
c_sleep <- list(both = list(c("(Intercept)" = 1), c(Days = 1)))
c_tl <- list(
  x_both = list(c(x_within = 1), c(x_between = 1)),
  general = list(c(x_within = 1, x_between = -1), c(session = 1), c(x_within = 1))
)
c_demo <- list(alliance = list(c(alliance_within_lag = 1), c(alliance_between_c = 1)))
c_oneway <- list(slopes = list(c(x_between = 1), c(x_within = 1)))
models <- list(
  list(id = "sleep_corr", data = "sleepstudy", reml = c(TRUE, FALSE), contrasts = c_sleep,
       formula = "Reaction ~ Days + (1 + Days | Subject)"),
  list(id = "sleep_uncorr", data = "sleepstudy", reml = TRUE, contrasts = c_sleep,
       formula = "Reaction ~ Days + (1 + Days || Subject)"),
  list(id = "sleep_unbalanced", data = "sleep_unbalanced", reml = TRUE, contrasts = c_sleep,
       formula = "Reaction ~ Days + (1 + Days | Subject)"),
  list(id = "tl_nested_patient_slope", data = "three_level", reml = c(TRUE, FALSE),
       contrasts = c_tl,
       formula = paste(tl_fixed, "+ (1 | therapist_id) + (1 + session || patient_id)")),
  list(id = "tl_nested_therapist_slope", data = "three_level", reml = TRUE, contrasts = c_tl,
       formula = paste(tl_fixed, "+ (1 + session | therapist_id) + (1 | patient_id)")),
  list(id = "tl_inner_corr", data = "three_level", reml = TRUE, contrasts = c_tl,
       formula = paste(tl_fixed, "+ (1 + session | patient_id) + (1 | therapist_id)")),
  list(id = "demo_main", data = "demo", reml = c(TRUE, FALSE), contrasts = c_demo,
       formula = paste(demo_fixed, "+ (1 + session_c || patient_id) + (1 | therapist_id)")),
  list(id = "oneway_balanced", data = "oneway_balanced", reml = c(TRUE, FALSE),
       contrasts = c_oneway, formula = "y ~ x_between + x_within + (1 | group)"),
  list(id = "oneway_singular", data = "oneway_singular", reml = c(TRUE, FALSE),
       contrasts = c_oneway, formula = "y ~ x_between + x_within + (1 | group)")
)

ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6))
fmt <- function(x) sprintf("%.17g", x)

contrast_matrix <- function(rows, terms) {
  L <- matrix(0, nrow = length(rows), ncol = length(terms), dimnames = list(NULL, terms))
  for (i in seq_along(rows)) L[i, names(rows[[i]])] <- rows[[i]]
  L
}

coef_rows <- list(); vcov_rows <- list(); contrast_rows <- list(); records <- list()
for (m in models) {
  d <- read_data(m$data)
  for (reml in m$reml) {
    warns <- character(0)
    fit <- withCallingHandlers(
      lmerTest::lmer(as.formula(m$formula), data = d, REML = reml, control = ctrl),
      warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
      message = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleMessage") }
    )
    terms <- names(fixef(fit))
    sat <- summary(fit, ddf = "Satterthwaite")$coefficients
    row <- data.frame(model_id = m$id, reml = reml, term = terms,
                      estimate = fmt(sat[, "Estimate"]), se = fmt(sat[, "Std. Error"]),
                      df_satt = fmt(sat[, "df"]), t_satt = fmt(sat[, "t value"]),
                      p_satt = fmt(sat[, "Pr(>|t|)"]),
                      se_kr = "", df_kr = "", t_kr = "", p_kr = "", stringsAsFactors = FALSE)
    if (reml) {
      kr <- summary(fit, ddf = "Kenward-Roger")$coefficients
      row$se_kr <- fmt(kr[, "Std. Error"]); row$df_kr <- fmt(kr[, "df"])
      row$t_kr <- fmt(kr[, "t value"]); row$p_kr <- fmt(kr[, "Pr(>|t|)"])
      v0 <- as.matrix(vcov(fit)); va <- as.matrix(pbkrtest::vcovAdj(fit))
      grid <- expand.grid(i = seq_along(terms), j = seq_along(terms))
      vcov_rows[[length(vcov_rows) + 1]] <- data.frame(
        model_id = m$id, term = terms[grid$i], term2 = terms[grid$j],
        vcov = fmt(v0[cbind(grid$i, grid$j)]), vcov_kr = fmt(va[cbind(grid$i, grid$j)]),
        stringsAsFactors = FALSE)
    }
    coef_rows[[length(coef_rows) + 1]] <- row
    matrices <- list()
    for (cid in names(m$contrasts)) {
      L <- contrast_matrix(m$contrasts[[cid]], terms)
      matrices[[cid]] <- lapply(seq_len(nrow(L)), function(i) unname(L[i, ]))
      methods <- if (reml) c("Satterthwaite", "Kenward-Roger") else "Satterthwaite"
      for (method in methods) {
        tab <- contestMD(fit, L, ddf = method)
        scaling <- NA
        if (method == "Kenward-Roger") {
          scaling <- pbkrtest::KRmodcomp(fit, L)$test[1, "F.scaling"]
        }
        contrast_rows[[length(contrast_rows) + 1]] <- data.frame(
          model_id = m$id, reml = reml, contrast_id = cid, method = method,
          F = fmt(tab[["F value"]]), ndf = tab[["NumDF"]], ddf = fmt(tab[["DenDF"]]),
          p = fmt(tab[["Pr(>F)"]]), F_scaling = fmt(scaling), stringsAsFactors = FALSE)
      }
    }
    vc <- as.data.frame(VarCorr(fit))
    records[[length(records) + 1]] <- list(
      model_id = m$id, data = m$data, data_file = basename(data_files[[m$data]]),
      data_md5 = unname(tools::md5sum(data_files[[m$data]])), formula = m$formula,
      reml = reml, terms = terms, theta = unname(getME(fit, "theta")),
      sigma = sigma(fit), singular = isSingular(fit),
      varcomp = list(grp = vc$grp, var1 = ifelse(is.na(vc$var1), "", vc$var1),
                     var2 = ifelse(is.na(vc$var2), "", vc$var2), vcov = vc$vcov),
      vcov_varpar = unname(fit@vcov_varpar), warnings = warns, contrasts = matrices
    )
  }
}

write.csv(do.call(rbind, coef_rows), file.path(out_dir, "ddf_coef.csv"), row.names = FALSE)
write.csv(do.call(rbind, vcov_rows), file.path(out_dir, "ddf_vcov_kr.csv"), row.names = FALSE)
write.csv(do.call(rbind, contrast_rows), file.path(out_dir, "ddf_contrasts.csv"),
          row.names = FALSE)
meta <- list(
  r_version = paste(R.version$major, R.version$minor, sep = "."),
  lme4_version = as.character(packageVersion("lme4")),
  lmerTest_version = as.character(packageVersion("lmerTest")),
  pbkrtest_version = as.character(packageVersion("pbkrtest")),
  fits = records
)
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out_dir, "ddf_fits.json"))
cat("wrote", length(records), "reference fits to", basename(out_dir), "\n")

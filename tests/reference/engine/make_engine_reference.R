# lme4 reference fits for tests/test_engine.py (helpers.engine).
#
# Regenerate from the project root (needs R >= 4 with lme4, Matrix, jsonlite, numDeriv;
# CI has no R and only reads the stored output):
#
#     .venv/bin/python tests/reference/engine/make_unequal_three_level.py   # data, if changed
#     Rscript tests/reference/engine/make_engine_reference.R
#
# Reads  ../three_level.csv (shared, not modified) and unequal_three_level.csv (this folder).
# Writes beside this script:
#   sleepstudy.csv               lme4's sleepstudy, exported once
#   lme4_engine_reference.json   one record per model and criterion (REML, ML): the model
#                                spec (so Python can build the same design), theta, logLik,
#                                REMLcrit/deviance, AIC, BIC, sigma, fixef, vcov, VarCorr,
#                                conditional modes and conditional covariances per level,
#                                isSingular, and the checks of lme4's own optimum below.
#
# Optimum checks: every model is fitted with minqa's bobyqa at rhoend = 1e-12 from lme4's
# default start and refitted with nloptwrap (NLOPT_LN_BOBYQA, xtol_abs = ftol_abs = 1e-14)
# from another start (theta / 2 + 0.1 on the diagonal); the fit with the lower criterion is
# kept and the criterion gap and theta gap between the two are stored, with the numDeriv
# gradient of lme4's profiled deviance at the kept theta.
#
# Conditional covariances: `condvar_exact` is the diagonal block, per group, of
# sigma^2 Lambda (Lambda' Z'Z Lambda + I)^-1 Lambda' computed densely here from getME();
# `condvar_gap` is its largest absolute difference from lme4's ranef(condVar = TRUE)
# "postVar" and `modes_gap` that of the modes from ranef() (models without "||" only).

suppressPackageStartupMessages({
  library(lme4)
  library(Matrix)
  library(jsonlite)
  library(numDeriv)
})

script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
here <- if (length(script_arg)) dirname(normalizePath(sub("^--file=", "", script_arg))) else "."

sleep_out <- sleepstudy
sleep_out$Subject <- as.character(sleep_out$Subject)
write.csv(sleep_out, file.path(here, "sleepstudy.csv"), row.names = FALSE)

read_data <- function(name) {
  path <- switch(name,
    sleepstudy = file.path(here, "sleepstudy.csv"),
    three_level = file.path(here, "..", "three_level.csv"),
    unequal = file.path(here, "unequal_three_level.csv")
  )
  d <- read.csv(path, stringsAsFactors = FALSE)
  for (col in intersect(c("Subject", "patient_id", "therapist_id"), names(d))) {
    d[[col]] <- factor(as.character(d[[col]]))
  }
  d
}

# ---- model specifications ----------------------------------------------------------------
spec <- function(id, data, response, fixed, patient, patient_terms, therapist = NULL,
                 therapist_terms = NULL, patient_covariance = "unstructured") {
  list(id = id, data = data, response = response, fixed = fixed, patient = patient,
       patient_terms = patient_terms, therapist = therapist, therapist_terms = therapist_terms,
       patient_covariance = patient_covariance)
}
term_text <- function(terms) {
  paste(ifelse(terms == "1", "1", terms), collapse = " + ")
}
formula_of <- function(m) {
  bar <- if (m$patient_covariance == "diagonal") "||" else "|"
  re <- sprintf("(%s %s %s)", term_text(m$patient_terms), bar, m$patient)
  if (!is.null(m$therapist)) {
    re <- paste(re, sprintf("+ (%s | %s)", term_text(m$therapist_terms), m$therapist))
  }
  paste(m$response, "~", paste(m$fixed, collapse = " + "), "+", re)
}

tl_fixed <- c("x_within", "x_between", "session")
models <- list(
  spec("sleep_int", "sleepstudy", "Reaction", "Days", "Subject", "1"),
  spec("sleep_slope", "sleepstudy", "Reaction", "Days", "Subject", c("1", "Days"))
)
for (ds in c("three_level", "unequal")) {
  models <- c(models, list(
    spec(paste0(ds, "_p_int"), ds, "y", tl_fixed, "patient_id", "1"),
    spec(paste0(ds, "_p_slope"), ds, "y", tl_fixed, "patient_id", c("1", "session")),
    spec(paste0(ds, "_pt_int"), ds, "y", tl_fixed, "patient_id", "1", "therapist_id", "1"),
    spec(paste0(ds, "_p_slope_t_int"), ds, "y", tl_fixed, "patient_id", c("1", "session"),
         "therapist_id", "1"),
    spec(paste0(ds, "_p_slope_t_slope"), ds, "y", tl_fixed, "patient_id", c("1", "session"),
         "therapist_id", c("1", "session"))
  ))
}
models <- c(models, list(
  spec("three_level_p_diag_t_int", "three_level", "y", tl_fixed, "patient_id",
       c("1", "session"), "therapist_id", "1", patient_covariance = "diagonal"),
  spec("unequal_null_therapist", "unequal", "y_null_therapist", tl_fixed, "patient_id", "1",
       "therapist_id", "1")
))

# ---- helpers -------------------------------------------------------------------------------
ctrl_first <- lmerControl(optimizer = "bobyqa", calc.derivs = FALSE,
                          check.conv.singular = "ignore",
                          optCtrl = list(rhoend = 1e-12, maxfun = 1e6))
ctrl_second <- lmerControl(optimizer = "nloptwrap", calc.derivs = FALSE,
                           check.conv.singular = "ignore",
                           optCtrl = list(algorithm = "NLOPT_LN_BOBYQA", xtol_abs = 1e-14,
                                          ftol_abs = 1e-14, xtol_rel = 0, ftol_rel = 0,
                                          maxeval = 1e6))

criterion <- function(fit) as.numeric(-2 * logLik(fit))

# Per grouping factor: labels, term names, modes (n x q) and exact conditional covariance
# (n x q x q), merging the split terms of "||".
group_summaries <- function(fit) {
  lam <- t(getME(fit, "Lambdat"))
  z <- getME(fit, "Z")
  m <- crossprod(z %*% lam) + Diagonal(ncol(lam))
  cond <- as.matrix(sigma(fit)^2 * lam %*% solve(m, t(lam)))
  b <- as.numeric(getME(fit, "b"))
  gp <- getME(fit, "Gp")
  cnms <- getME(fit, "cnms")
  flist <- getME(fit, "flist")
  fac_of_term <- attr(flist, "assign")
  out <- list()
  for (fac in unique(names(flist)[fac_of_term])) {
    terms_here <- which(names(flist)[fac_of_term] == fac)
    labels <- levels(flist[[fac]])
    nl <- length(labels)
    names_all <- unlist(cnms[terms_here])
    q <- length(names_all)
    idx <- matrix(NA_integer_, nl, q)  # position of (level, term column) in b
    col <- 0
    for (k in terms_here) {
      nc <- length(cnms[[k]])
      for (j in seq_len(nc)) {
        idx[, col + j] <- gp[k] + (seq_len(nl) - 1) * nc + j
      }
      col <- col + nc
    }
    modes <- matrix(b[as.vector(idx)], nl, q)
    cv <- array(0, c(nl, q, q))
    for (a in seq_len(q)) for (c2 in seq_len(q)) cv[, a, c2] <- cond[cbind(idx[, a], idx[, c2])]
    out[[fac]] <- list(labels = I(labels), terms = I(names_all), modes = modes,
                      condvar_exact = cv)
  }
  if (!any(duplicated(names(cnms)))) {
    re <- ranef(fit, condVar = TRUE)
    for (fac in names(out)) {
      pv <- attr(re[[fac]], "postVar")
      lme4_cv <- aperm(pv, c(3, 1, 2))
      out[[fac]]$condvar_gap <- max(abs(lme4_cv - out[[fac]]$condvar_exact))
      out[[fac]]$modes_gap <- max(abs(as.matrix(re[[fac]]) - out[[fac]]$modes))
    }
  }
  out
}

varcorr_table <- function(fit) {
  vc <- as.data.frame(VarCorr(fit), order = "lower.tri")
  data.frame(
    group = sub("\\.[0-9]+$", "", vc$grp),
    term = ifelse(is.na(vc$var1), "", vc$var1),
    term2 = ifelse(is.na(vc$var2), "", vc$var2),
    variance_or_cov = vc$vcov,
    sd_or_corr = vc$sdcor,
    stringsAsFactors = FALSE
  )
}

# ---- fits ------------------------------------------------------------------------------------
records <- list()
for (m in models) {
  d <- read_data(m$data)
  f <- as.formula(formula_of(m))
  for (reml in c(TRUE, FALSE)) {
    first <- lmer(f, data = d, REML = reml, control = ctrl_first)
    th1 <- getME(first, "theta")
    lower <- getME(first, "lower")
    alt <- ifelse(lower == 0, th1 / 2 + 0.1, th1 / 2)
    second <- lmer(f, data = d, REML = reml, control = ctrl_second,
                   start = list(theta = alt))
    fit <- if (criterion(second) < criterion(first)) second else first
    theta <- getME(fit, "theta")
    devfun <- as.function(fit)
    grad <- numDeriv::grad(devfun, theta)
    ll <- logLik(fit)
    cf <- fixef(fit)
    vc <- as.matrix(vcov(fit))
    records[[length(records) + 1]] <- list(
      id = m$id, data = m$data, formula = formula_of(m), reml = reml,
      response = m$response, fixed = I(m$fixed), patient = m$patient,
      patient_terms = I(m$patient_terms), therapist = m$therapist,
      therapist_terms = if (is.null(m$therapist_terms)) NULL else I(m$therapist_terms),
      patient_covariance = m$patient_covariance,
      nobs = nobs(fit), ngroups = as.list(ngrps(fit)),
      theta = I(unname(theta)), theta_names = I(names(theta)), theta_lower = I(unname(lower)),
      logLik = as.numeric(ll), df = attr(ll, "df"), criterion = criterion(fit),
      AIC = AIC(fit), BIC = BIC(fit), sigma = sigma(fit),
      fixef = list(names = I(names(cf)), estimate = I(unname(cf)), se = I(unname(sqrt(diag(vc))))),
      vcov = unname(vc),
      varcorr = varcorr_table(fit),
      groups = group_summaries(fit),
      singular = isSingular(fit),
      check = list(
        criterion_first = criterion(first), criterion_second = criterion(second),
        criterion_gap = abs(criterion(first) - criterion(second)),
        theta_gap = max(abs(getME(first, "theta") - getME(second, "theta"))),
        max_abs_gradient = max(abs(grad))
      )
    )
    cat(sprintf("%-32s %-5s crit %.10f  gap %.2e  theta gap %.2e  grad %.2e  singular %s\n",
                m$id, if (reml) "REML" else "ML", criterion(fit),
                abs(criterion(first) - criterion(second)),
                max(abs(getME(first, "theta") - getME(second, "theta"))), max(abs(grad)),
                isSingular(fit)))
  }
}

meta <- list(
  r_version = paste(R.version$major, R.version$minor, sep = "."),
  lme4_version = as.character(packageVersion("lme4")),
  fits = records
)
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, null = "null", matrix = "rowmajor"),
           file.path(here, "lme4_engine_reference.json"))
cat("wrote", length(records), "fits\n")

# lme4/lmerTest refits of the power reference replicates (tests/test_power.py).
#
# Reads <folder>/sessions.csv, written by make_power_reference.py ("data" step): one long
# table of N_REPS simulated studies of one design cell (column `replicate`), the session
# rows and model features exactly as helpers.power fits them.  Fits to each replicate the
# analysis model of helpers.power (REML, Satterthwaite df as lmerTest):
#
#   outcome ~ alliance_within_lag + alliance_between_c + session_c +
#             (1 + session_c || patient_id) + (1 | therapist_id)
#
# on the rows with outcome, lagged within-alliance and between-alliance present (the rows
# helpers.power keeps), and writes <folder>/r_fits.csv: replicate, term, n_obs, singular,
# estimate, se, df, p.  Needs R with lme4 and lmerTest; CI does not run this.
#
#     Rscript tests/reference/power/lme4_power_reference.R /tmp/power_ref

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})

args <- commandArgs(trailingOnly = TRUE)
folder <- if (length(args)) args[1] else "."
d <- read.csv(file.path(folder, "sessions.csv"),
              colClasses = c(therapist_id = "character", patient_id = "character"))
d <- d[complete.cases(d[, c("outcome", "alliance_within_lag", "alliance_between_c")]), ]
f <- outcome ~ alliance_within_lag + alliance_between_c + session_c +
  (1 + session_c || patient_id) + (1 | therapist_id)
terms <- c("alliance_within_lag", "alliance_between_c")

t0 <- proc.time()[["elapsed"]]
rows <- lapply(split(d, d$replicate), function(x) {
  fit <- suppressMessages(suppressWarnings(lmerTest::lmer(f, data = x, REML = TRUE)))
  s <- coef(summary(fit, ddf = "Satterthwaite"))
  data.frame(
    replicate = x$replicate[1],
    term = terms,
    n_obs = nobs(fit),
    singular = isSingular(fit),
    estimate = s[terms, "Estimate"],
    se = s[terms, "Std. Error"],
    df = s[terms, "df"],
    p = s[terms, "Pr(>|t|)"],
    row.names = NULL
  )
})
out <- do.call(rbind, rows)
write.csv(out, file.path(folder, "r_fits.csv"), row.names = FALSE)
cat(sprintf("%d replicates in %.1f s (lme4 %s, lmerTest %s)\n", length(rows),
            proc.time()[["elapsed"]] - t0, packageVersion("lme4"), packageVersion("lmerTest")))
for (term in terms) {
  p <- out$p[out$term == term]
  cat(sprintf("%s: %d / %d rejected at .05\n", term, sum(p < 0.05), length(p)))
}

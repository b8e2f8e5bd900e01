"""Comparability across sites (issue 8; SO-08, SO-09, SO-07).

Every spoke site must make a product comparable with the product's reference site. This
package holds the reads (`selectors`) and the writes (`services`) of:

- **reference limits**: per product CQA, the reference site's limits approved by QA with an
  e-signature (from its verification batches, mean ± 3 SD, or from the specification), with the
  equivalence margin; fixed until re-approved;
- **evaluation**: per CQA and site, the results against those limits (Nelson rules 1 to 4 on an
  individuals chart) and against the reference site's results (mean difference, 90 % CI, two
  one-sided tests), stored as a snapshot for the dashboard;
- **signals**: a run-rule break or a failed equivalence writes one `ComparabilitySignal` outbox
  row, which the deviations app turns into one deviation (design §2);
- **the annual check**: split starting material tested at the reference site and at the site,
  the paired results, their statistics and QA's signed review.

The statistics are `batches.stats` and the pictures `batches.charts`.
"""

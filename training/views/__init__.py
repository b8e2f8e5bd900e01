"""The training pages (issue 7 §6 and §7): my training, procedures, items, curricula, assignments,
records and the training matrix. Views stay thin: they fetch through a selector (what a person
may not see is a 404), bind a form, call one service from training/services.py and redirect; a
refusal re-renders the page with what was typed, under the service's status code."""

"""Batch records and QP certification: templates, steps, results and the release queue."""

"""Grader implementations: one small module per grader type, each a `*Engine` with `grade_batch`."""

"""Evaluation: metrics and results, calibration, HTML reports, agreement with FER+ annotators."""

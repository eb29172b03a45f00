"""Benchmarks: each prints its figures beside a raw baseline measured in the same run."""

import logging

import structlog

# Figures, not logs: only warnings and errors from the code under measurement.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

"""Compatibility namespace for scripts written for Azure ML ParallelRunStep."""

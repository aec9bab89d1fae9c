"""Compatibility name: ``from azureml_user.parallel_run import EntryScript`` is parallelrun's."""

from parallelrun import EntryScript

__all__ = ["EntryScript"]

"""Downstream tasks: fine-tuning and the sentiment data."""

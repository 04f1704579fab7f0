"""Surveillance: risk scores with reasons (risk.py), alerts per episode with their workflow
(alerts.py), the drivers the stream and the backfill call (run.py) and scoring against
ground truth (evaluate.py)."""

"""Whole datasets: plan, pool, manifest and verification."""

"""Shipped data: installed as emojicam.data.samples (see emojicam/resources.py)."""

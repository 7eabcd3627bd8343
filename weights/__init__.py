"""Shipped data: installed as emojicam.data.weights (see emojicam/resources.py)."""

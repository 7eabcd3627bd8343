"""Shipped data: installed as emojicam.data.emoji_set (see emojicam/resources.py)."""

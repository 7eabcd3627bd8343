"""The data emojicam ships: the packaging maps the checkout's top-level emoji_set/, weights/ and samples/ here."""

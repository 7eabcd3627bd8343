"""`emojicam bench` and `emojicam tune`: timing loops, peers, machine facts, reports, kernel search."""

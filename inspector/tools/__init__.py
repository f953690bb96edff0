"""Research and operations, off the serving path: ablate, visualize, bench, demo."""

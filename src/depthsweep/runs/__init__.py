"""The run record: what a run directory holds, where it came from, and how it is read back."""

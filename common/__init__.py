"""Plumbing shared by the paper plugins: device and seeds, datasets, the
training loop, run records, claims and reports, plotting.  Nothing here is a
paper's idea; a helper moves here when a second paper needs it."""

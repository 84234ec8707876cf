"""The runs wing: what compares and moves runs between people: the review report, the table of
experiments, DVC's JSON, sharing the run cache and the cloud sweep. No imports here."""

"""The evaluation wing: the test-set metrics and the classifier that scores samples. No imports
here."""

"""Apps and load clients for the supervisor tests and the reload benchmark."""

"""Wire contracts of our own, generated from proto/ (`make proto`); do not edit by hand."""

"""Generated from proto/meshroute/api/v1alpha1 (`make proto`); do not edit by hand."""

"""Helpers the tests share: free ports, child processes, configs, running stacks."""

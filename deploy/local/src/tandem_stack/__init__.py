"""Tandem run natively: the real gateway, nats-server and Python workers as processes.

One harness serves `make run`, `make demo`, the cross-language tests and the
bench, so that all four start the stack the same way.
"""

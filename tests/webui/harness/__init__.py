"""WebUI stand-ins for tests and benchmarks: a tiny random SD model and harnesses that mirror A1111 1.10's
and Forge's CFG denoisers (see each module's docstring for the upstream file and commit it mirrors)."""

"""Composition roots of the command line: `ce4big` and the dev stack."""

"""A user module that calls sys.exit while it is imported (`trainable: tests.exits_on_import:f`)."""
import sys

sys.exit(4)

"""Thin argparse entry points over the core (console scripts in setup.py)."""

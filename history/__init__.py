"""Binance public-data dump import (``ingestor.py import``) and the ``archive`` subcommand's CLI."""

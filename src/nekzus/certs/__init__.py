"""Certificates: a local CA kept in the data directory, managed leaf certificates served by SNI, hot swaps."""

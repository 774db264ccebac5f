"""smsd: an SMS gateway daemon for Asterisk PBXs."""

__version__ = "0.1.0"

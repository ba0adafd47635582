"""callbridge: an open-source PBX for teams that work in a CRM."""

__version__ = "0.1.0"

"""Configuration: the TOML file's settings (`settings`, checked by pydantic), its loading and
merging (`loading.load_settings`) with the checks between sections (`cross_references`), value
types (`values`), the sample written by `ticketgw init` (`sample_config.toml`) and the
mirroring of queues, staff and templates into the database (`sync`).

Guarantees: a bad configuration is refused as a whole with every problem named (file, section,
key); nothing is half-applied.
"""

"""Persistence: schema (`models`), engine and transactions (`db`), migrations, blobs, claims."""

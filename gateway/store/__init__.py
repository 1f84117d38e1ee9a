"""Persistence: schema (`models`, `models_faq`, `models_files`; `schema` has them all),
engine and transactions (`db`), migrations, blobs, claims."""

# every table must be on SQLModel.metadata whichever store module is imported first
import gateway.store.models_faq
import gateway.store.models_files  # noqa: F401

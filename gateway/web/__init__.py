"""The web view (FastAPI, server-rendered). `app.create_web_app` builds it from an `App`."""

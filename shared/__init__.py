"""The core every Cloudinary webhook function imports.

Standard library only at module level: a request rejected for its signature must never pay for importing
an SDK. See ``shared.webhook`` for the decorator a function is written with.
"""

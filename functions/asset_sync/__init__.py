"""asset_sync: mirror Cloudinary asset state into your own SQL database (see README.md)."""

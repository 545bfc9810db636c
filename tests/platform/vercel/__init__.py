"""Vercel: every api/ function built by @vercel/python's own build() and served by vercel-runtime, offline."""

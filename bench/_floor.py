"""The standard library modules every request needs (JSON, logging, hashing): the floor under shared's
import time, measured the same way (bench/coldstart.py)."""

import hashlib  # noqa: F401
import hmac  # noqa: F401
import json  # noqa: F401
import logging  # noqa: F401

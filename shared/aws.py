"""botocore clients (face_tagging's Rekognition, the DynamoDB idempotency store): what boto3's ``client()`` returns,
created without importing boto3, whose resource layer and s3transfer a client never uses (tens of milliseconds and
~17 MiB of a cold start), and built for good (``coldstart.lasting``: botocore's ~40,000 objects live as long as
the process).

A caller may give a folder of botocore data trimmed to its client (``data_path``: face_tagging's Rekognition data,
the idempotency store's DynamoDB data; devtools/botocore_data.py writes them). The clients' data loader lists the
services it knows by folder name. botocore's own also looks into every service folder for the type of file asked,
~3,000 stat calls, only for ``create_client`` to check that the service is among them: a third of a client's
creation (DynamoDB's: 68 -> 44 ms here, 9 fresh processes each).

botocore is imported here at first use only: a request that never reaches AWS never loads it.
"""

from __future__ import annotations

import os

from shared import coldstart

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from typing import Any


def client(service: str, *, region: str | None, endpoint: str | None, data_path: str | None = None,
           **config: Any) -> Any:
    """A botocore client for ``service``; ``config``: botocore ``Config`` options. ``data_path``: a folder of
    botocore data trimmed from botocore's own (treated as botocore's own, so that endpoint data from there is not
    taken as a custom endpoint), searched after the folders ``AWS_DATA_PATH`` or the config file's ``data_path``
    name, as boto3's loader searches those first, and before botocore's own."""
    with coldstart.lasting():
        import botocore.session
        from botocore.config import Config
        from botocore.loaders import Loader

        session = botocore.session.Session()
        configured = session.get_config_variable("data_path")  # as botocore.loaders.create_loader reads it
        searched = [os.path.expanduser(os.path.expandvars(path)) for path in configured.split(os.pathsep)] \
            if configured else []
        searched += [data_path] if data_path else []

        class ServiceListingLoader(Loader):
            """botocore's data loader, searching the configured folders and ``data_path`` first, listing services
            by folder name."""

            def __init__(self) -> None:
                super().__init__(extra_search_paths=searched)

            def list_available_services(self, type_name: str) -> list[str]:
                return sorted({name for path in self.search_paths if os.path.isdir(path)
                               for name in os.listdir(path) if "." not in name})

            def is_builtin_path(self, path: str) -> bool:
                return bool(data_path and path.startswith(data_path + os.sep)) or super().is_builtin_path(path)

        session.register_component("data_loader", ServiceListingLoader())
        return session.create_client(service, region_name=region, endpoint_url=endpoint, config=Config(**config))

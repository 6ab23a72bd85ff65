"""The API's routers, one module per area.

Each router carries its full prefix, tags and error responses, so its routes are complete on
their own: `app/api/router.py` mounts the `router` of every module here.
"""

API_PREFIX = "/api/v1"

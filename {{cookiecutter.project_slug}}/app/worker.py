"""The gunicorn worker class of scripts/start.sh: uvicorn's, without its proxy and server headers.

uvicorn_worker.UvicornWorker builds uvicorn's Config with `proxy_headers` on and gunicorn's
`forwarded_allow_ips` (127.0.0.1 by default), so any local process could set the peer with
`X-Forwarded-For` before the app sees it; and uvicorn adds `server: uvicorn` to every
response, which the app cannot remove. Proxy trust lives in one place, app/utils/client_ip.py,
driven by `TRUSTED_PROXIES`; gunicorn has no flag for either setting, hence this class.
"""

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):  # type: ignore[misc]  # uvicorn_worker ships no type hints
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "proxy_headers": False,
        "server_header": False,
    }

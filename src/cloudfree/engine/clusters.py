"""Clusters from services: dask-gateway (``--dask-gateway URL``) and Coiled (``--coiled``).

Both are optional extras (``pip install 'cloudfree[gateway]'``, ``'cloudfree[coiled]'``),
imported only here and only when asked for. Their own configuration applies: dask-gateway's
authentication and cluster options (``gateway.auth.*``, ``gateway.cluster.options`` in Dask's
configuration), Coiled's account, token and software environment (``coiled login``, the
``coiled.*`` Dask configuration). The workers must have cloudfree installed.
"""

from __future__ import annotations

import importlib.util
import logging
from contextlib import ExitStack
from typing import Any

from cloudfree.access import redact_href, redact_message
from cloudfree.errors import EngineError, InvalidInputError

log = logging.getLogger(__name__)

#: What each service needs: (module to import, the extra that installs it, the option).
SERVICES = {
    "gateway": ("dask_gateway", "gateway", "--dask-gateway"),
    "coiled": ("coiled", "coiled", "--coiled"),
}
DEFAULT_WORKERS = 2


def check_installed(service: str) -> None:
    """Raise a clear error naming the extra when ``service``'s package is missing."""
    module, extra, option = SERVICES[service]
    if importlib.util.find_spec(module) is None:
        raise InvalidInputError(
            f"{option} needs the {module.replace('_', '-')} package, which is not installed; "
            f"install it with: pip install 'cloudfree[{extra}]'."
        )


def gateway_client(url: str, workers: int | None, stack: ExitStack) -> Any:
    """A new cluster on the dask-gateway server at ``url``, scaled to ``workers``."""
    check_installed("gateway")
    from dask_gateway import Gateway

    try:
        gateway = stack.enter_context(Gateway(url))
        cluster = stack.enter_context(gateway.new_cluster())
    except Exception as exc:  # the service's own errors: authentication, options, network
        raise EngineError(
            f"dask-gateway at {redact_href(url)} could not start a cluster: "
            f"{redact_message(str(exc))}"
        ) from None
    cluster.scale(workers or DEFAULT_WORKERS)
    client = stack.enter_context(cluster.get_client())
    log.info("dask-gateway cluster %s", cluster.name)
    return client


def coiled_client(workers: int | None, stack: ExitStack) -> Any:
    """A new Coiled cluster of ``workers`` workers, from the user's Coiled configuration."""
    check_installed("coiled")
    import coiled

    try:
        cluster = stack.enter_context(coiled.Cluster(n_workers=workers or DEFAULT_WORKERS))
    except Exception as exc:  # the service's own errors: account, quota, software environment
        raise EngineError(f"Coiled could not start a cluster: {redact_message(str(exc))}") from None
    return stack.enter_context(cluster.get_client())

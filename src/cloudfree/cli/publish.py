"""``cloudfree publish``: upsert a STAC collection and its items into a STAC API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cloudfree.config import STAC_API_TOKEN_VARIABLE, publish_settings, secret_from_environment
from cloudfree.errors import InvalidInputError, PublishError

if TYPE_CHECKING:
    from cloudfree.catalog.stac_api import ApiAuth


def _auth(header: str | None, variable: str | None) -> ApiAuth | None:
    """The auth header from the environment; an error when one was asked for and is missing."""
    from cloudfree.catalog.stac_api import ApiAuth

    name = variable or STAC_API_TOKEN_VARIABLE
    token = secret_from_environment(name)
    if token is None:
        if variable is not None or header is not None:
            raise InvalidInputError(
                f"environment variable {name} is empty or not set; export the API token there "
                "(it is read from the environment so that it never shows in a command line)"
            )
        return None
    return ApiAuth.from_token(token, header or "Authorization")


@click.command()
@click.argument("catalog")
@click.option("--api", "api_url", required=True, help="Root URL of the STAC API.")
@click.option(
    "--collection",
    "collection_id",
    default=None,
    help="For a single item JSON: the id of the collection (already in the API) it goes into.",
)
@click.option(
    "--href-base",
    default=None,
    metavar="URL",
    help="Public URL at which --local-root is served (object store or HTTP): local asset "
    "hrefs under it are published as URLs under this one.",
)
@click.option(
    "--local-root",
    default=None,
    metavar="PATH",
    help="The folder --href-base serves (default: the folder holding the catalog folder, "
    "where mosaic puts the store beside <store>.stac).",
)
@click.option(
    "--allow-local-hrefs",
    is_flag=True,
    help="Publish local files as file:// URLs instead of refusing (a single-machine setup).",
)
@click.option(
    "--viewer",
    "viewer_template",
    default=None,
    metavar="URL_TEMPLATE",
    help="Tile server item endpoint with {collection} and {item}, e.g. "
    "https://raster.example.com/collections/{collection}/items/{item}: adds viewer, xyz and "
    "tilejson links to each item.",
)
@click.option(
    "--viewer-query",
    default=None,
    metavar="QUERY",
    help="Rendering parameters for the xyz/tilejson links (default for mosaics with a COG: "
    "true colour, assets=cog&asset_bidx=cog|R,G,B&rescale=0,3000).",
)
@click.option(
    "--auth-header",
    default=None,
    metavar="NAME",
    help="Header that carries the token (default Authorization, sent as 'Bearer <token>').",
)
@click.option(
    "--auth-env",
    default=None,
    metavar="VAR",
    help=f"Environment variable holding the token (default {STAC_API_TOKEN_VARIABLE}; "
    "without it set, no auth header is sent).",
)
@click.option(
    "--rollback",
    is_flag=True,
    help="If an object fails, undo this run's changes (delete what it created, restore what "
    "it replaced) instead of keeping what was published for a rerun to complete.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write what happened to each object as JSON (also when publishing fails).",
)
@click.pass_context
def publish(
    ctx: click.Context,
    catalog: str,
    api_url: str,
    collection_id: str | None,
    href_base: str | None,
    local_root: str | None,
    allow_local_hrefs: bool,
    viewer_template: str | None,
    viewer_query: str | None,
    auth_header: str | None,
    auth_env: str | None,
    rollback: bool,
    report_path: str | None,
) -> None:
    """Create or update (upsert) a STAC collection and its items in a STAC API.

    CATALOG is a collection.json (or the folder holding it, e.g. the <store>.stac that
    `cloudfree mosaic` writes), local or at an object-store URL, or one item JSON with
    --collection. A rerun changes nothing; every object is validated before any request.
    """
    from cloudfree.catalog.publish import publish as publish_items
    from cloudfree.catalog.stac_api import StacApiClient
    from cloudfree.catalog.staging import HrefPolicy, ViewerLinks, prepare, read_catalog
    from cloudfree.cli.main import _handle_errors, _progress

    @_handle_errors
    def run() -> None:
        auth = _auth(auth_header, auth_env)
        viewer = ViewerLinks(viewer_template, viewer_query) if viewer_template else None
        if viewer_query and not viewer_template:
            raise InvalidInputError("--viewer-query needs --viewer URL_TEMPLATE")
        quiet = ctx.find_root().obj["quiet"]
        prepared = prepare(
            read_catalog(catalog, collection_id=collection_id),
            hrefs=HrefPolicy(href_base, local_root, allow_local_hrefs),
            viewer=viewer,
        )
        client = StacApiClient(api_url, auth=auth, settings=publish_settings())
        try:
            with _progress(not quiet, "publishing items") as progress:
                report = publish_items(prepared, client, rollback=rollback, progress=progress)
        except PublishError as exc:
            if report_path and exc.report is not None:
                _write_report(report_path, exc.report)
            raise
        finally:
            client.close()
        if report_path:
            _write_report(report_path, report)
        if not quiet:
            click.echo(f"Published {report.summary()}.")

    run()


def _write_report(path: str, report: object) -> None:
    to_dict = getattr(report, "to_dict", None)
    if to_dict is not None:
        Path(path).write_text(json.dumps(to_dict(), indent=2) + "\n", encoding="utf-8")

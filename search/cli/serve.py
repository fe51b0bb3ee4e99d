"""`dinosearch serve`: the HTTP API and web page over a library, run by uvicorn.

fastapi and uvicorn are imported inside the command so `dinosearch --help` stays instant.
"""

import ipaddress
import threading

import click

from search.cli.options import folders_option, library_options, model_options

ENV_TOKEN = "DINOSEARCH_TOKEN"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def page_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


@click.command()
@click.option("--host", default="127.0.0.1", help="Address to bind.")
@click.option("--port", default=8000, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar=ENV_TOKEN,
    help=f"Require 'Authorization: Bearer TOKEN' on every request [env {ENV_TOKEN}]; "
    "needed to bind anything but loopback.",
)
@folders_option(
    "--root",
    "roots",
    "A folder the page may index (repeatable); without one, indexing from the web is off.",
)
@folders_option(
    "--watch",
    "watch",
    "Keep the library current as files under this folder are added, changed, moved or "
    "deleted (repeatable); GET /api/watch says what it is doing.",
)
@click.option("--watch-poll", is_flag=True, help="With --watch: poll (network shares).")
@library_options
@model_options
def serve(host, port, token, roots, watch, watch_poll, index_dir, model, device, dtype, runtime):
    """Serve the search page and HTTP API (OpenAPI docs at /docs).

    \b
    Example:
        dinosearch serve --root ~/Pictures
        dinosearch serve --watch ~/Pictures
        dinosearch serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    if not is_loopback(host) and not token:
        raise click.UsageError(
            f"--host {host} exposes the library to the network: give --token (or {ENV_TOKEN}), "
            "or keep the default 127.0.0.1"
        )
    # imported here, not at the top: the web stack (FastAPI, uvicorn) and the facade cost ~1 s,
    # which every other command and `--help` would pay
    import uvicorn

    from search.collection import Collection
    from search.web.app import create_app
    from search.web.guard import LOOPBACK_HOSTS
    from search.web.watching import start_watch

    coll = Collection(index_dir, model=model, device=device, dtype=dtype, runtime=runtime)
    app = create_app(
        coll, root=list(roots), token=token, allowed_hosts=(*LOOPBACK_HOSTS, host.strip("[]"))
    )
    threading.Thread(target=app.state.dinosearch.preload, daemon=True).start()
    if watch:
        start_watch(app.state.dinosearch, list(watch), watch_poll)
        click.echo(f"dinosearch: watching {', '.join(watch)}", err=True)
    click.echo(f"dinosearch: library {coll.directory}", err=True)
    click.echo(f"dinosearch: open {page_url(host, port, token)}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    serve()

"""``rekolab serve``: Amazon Rekognition's own JSON 1.1 endpoint, on this machine.

Unchanged boto3 code, the AWS CLI and the other AWS SDKs talk to it once
``AWS_ENDPOINT_URL_REKOGNITION`` points here::

    rekolab serve --port 9250
    AWS_ENDPOINT_URL_REKOGNITION=http://127.0.0.1:9250 python their_script.py

Built on starlette + uvicorn; see docs/server.md for what it does and does not do.
"""
from __future__ import annotations

import ipaddress
import socket
import sys

from .app import MAX_BODY_BYTES, create_app

__all__ = ["create_app", "serve", "is_loopback", "MAX_BODY_BYTES", "DEFAULT_PORT", "environment"]

DEFAULT_PORT = 9250


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def environment(host: str, port: int, credentials: dict[str, str] | None) -> dict[str, str]:
    """The variables an SDK needs to talk to this server."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    env = {"AWS_ENDPOINT_URL_REKOGNITION": f"http://{shown}:{port}"}
    if credentials is None:  # any key is accepted; SDKs still need one to sign with
        env.update({"AWS_ACCESS_KEY_ID": "rekolab", "AWS_SECRET_ACCESS_KEY": "rekolab"})
    return env


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, credentials: dict[str, str] | None = None,
          allow_remote: bool = False, client=None, log_level: str = "info", out=None) -> None:
    """Run the endpoint until SIGTERM/SIGINT: uvicorn then stops accepting
    connections, answers the requests in flight and exits; jobs still running end
    as the job contract says (FAILED, "interrupted")."""
    import uvicorn

    out = out or sys.stdout
    if not is_loopback(host) and credentials is None and not allow_remote:
        raise ValueError(f"refusing to serve on {host} (not a loopback address) without --credentials: "
                         "anyone who can reach it could run jobs and read your media. Give "
                         "--credentials FILE, or --allow-unauthenticated-remote if this is really wanted")
    app = create_app(client, credentials=credentials)
    print(f"rekolab serve: Amazon Rekognition on http://{host}:{port} "
          f"({'SigV4 verified' if credentials else 'any SigV4 signature accepted'}). Set:", file=out)
    for key, value in environment(host, port, credentials).items():
        print(f"  export {key}={value}", file=out)
    print("  (S3, SNS, SQS and Kinesis are reached through boto3's own configuration: "
          "AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, profiles)", file=out, flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30,
                            lifespan="off")
    uvicorn.Server(config).run()
